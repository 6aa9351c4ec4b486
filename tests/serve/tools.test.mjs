// serve_tools: structured output and tool calls through the official `openai`
// client, on stories260K (a model that knows nothing of JSON, so every valid
// output below is the constrainer's doing): response_format json_object and
// json_schema (whole and streamed, chat and completions), schemas refused by
// keyword, tools with tool_choice required / named / none / auto,
// parallel_tool_calls, and tool calls streamed as deltas (the head of a call,
// then its arguments in fragments as they are generated).
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { CHAT_TEMPLATE, assertCleanStderr, openaiModule, startServer } from './lib/serve.mjs';

const { OpenAI } = openaiModule();
const MODEL = 'qiao-test-stories';
let server;
let client;

before(async () => {
  server = await startServer(['--slots', '2', '--chat-template', CHAT_TEMPLATE, '--model-name', MODEL]);
  const opts = { baseURL: server.baseURL, apiKey: 'none', maxRetries: 0, timeout: 120000 };
  if (Number(process.versions.node.split('.')[0]) < 20) opts.httpAgent = new http.Agent({ keepAlive: false });
  client = new OpenAI(opts);
});
after(async () => {
  if (server) {
    await server.stop();
    assertCleanStderr(server);
  }
});

const MESSAGES = [{ role: 'user', content: 'Tell me about Lily.' }];

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 10 },
    age: { type: 'integer', minimum: 1, maximum: 99 },
    mood: { enum: ['happy', 'sad'] },
    born: { type: 'string', format: 'date' },
    friends: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 2 },
  },
  required: ['name', 'age', 'mood', 'born', 'friends'],
  additionalProperties: false,
};

// The checks of the schemas used here, written out (no validator library).
function checkPerson(v, what) {
  assert.equal(typeof v, 'object', what);
  assert.deepEqual(Object.keys(v).sort(), ['age', 'born', 'friends', 'mood', 'name'], what);
  assert.ok(typeof v.name === 'string' && [...v.name].length <= 10, what);
  assert.ok(Number.isInteger(v.age) && v.age >= 1 && v.age <= 99, what);
  assert.ok(['happy', 'sad'].includes(v.mood), what);
  assert.match(v.born, /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/, what);
  assert.ok(Array.isArray(v.friends) && v.friends.length <= 2, what);
  for (const f of v.friends) assert.ok(typeof f === 'string' && [...f].length <= 6, what);
}

const schemaFormat = { type: 'json_schema', json_schema: { name: 'person', strict: true, schema: PERSON } };

test('response_format json_object: the content is a JSON object', async () => {
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: MODEL, messages: MESSAGES, max_completion_tokens: 300, temperature: 1, seed,
      response_format: { type: 'json_object' },
    });
    const c = r.choices[0];
    if (c.finish_reason === 'length') continue; // an object may be cut by max tokens
    assert.equal(c.finish_reason, 'stop');
    const v = JSON.parse(c.message.content);
    assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v), c.message.content);
  }
});

test('response_format json_schema strict: valid against the schema, greedy and sampled', async () => {
  for (const [temperature, seed] of [[0, 0], [1, 5], [1, 6], [1.5, 7]]) {
    const r = await client.chat.completions.create({
      model: MODEL, messages: MESSAGES, max_completion_tokens: 400, temperature, seed, response_format: schemaFormat,
    });
    assert.equal(r.choices[0].finish_reason, 'stop', r.choices[0].message.content);
    checkPerson(JSON.parse(r.choices[0].message.content), r.choices[0].message.content);
  }
});

test('response_format json_schema streamed: the deltas join into valid JSON', async () => {
  const s = await client.chat.completions.create({
    model: MODEL, messages: MESSAGES, max_completion_tokens: 400, temperature: 1, seed: 11,
    response_format: schemaFormat, stream: true,
  });
  let text = '';
  let finish = null;
  for await (const chunk of s) {
    const c = chunk.choices[0];
    if (c && c.delta && c.delta.content) text += c.delta.content;
    if (c && c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(finish, 'stop');
  checkPerson(JSON.parse(text), text);
});

test('completions take response_format too', async () => {
  const r = await client.completions.create({
    model: MODEL, prompt: 'Once upon a time', max_tokens: 400, temperature: 1, seed: 3,
    response_format: { type: 'json_schema', json_schema: { name: 'p', schema: PERSON } },
  });
  assert.equal(r.choices[0].finish_reason, 'stop');
  checkPerson(JSON.parse(r.choices[0].text), r.choices[0].text);
});

test('unsupported or malformed schemas are refused naming the keyword', async () => {
  const cases = [
    [{ type: 'integer', multipleOf: 3 }, /multipleOf/],
    [{ type: 'object', patternProperties: { '^a': {} } }, /patternProperties/],
    [{ type: 'string', format: 'email' }, /email/],
    [{ type: 'string', pattern: '(a)\\1' }, /backreference/],
    [{ $ref: '#/$defs/missing' }, /missing/],
    [{ oneOf: [{ type: 'integer' }, { type: 'number' }] }, /oneOf at \/: branches 0 and 1 can both match/],
  ];
  for (const [schema, re] of cases) {
    await assert.rejects(client.chat.completions.create({
      model: MODEL, messages: MESSAGES, max_completion_tokens: 8,
      response_format: { type: 'json_schema', json_schema: { name: 'x', strict: true, schema } },
    }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
      assert.match(e.message, re);
      return true;
    });
  }
  await assert.rejects(client.chat.completions.create({
    model: MODEL, messages: MESSAGES, response_format: { type: 'xml' },
  }), OpenAI.BadRequestError);
});

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['c', 'f'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const ALARM = {
  type: 'function',
  function: {
    name: 'set_alarm',
    parameters: {
      type: 'object',
      properties: { hour: { type: 'integer', minimum: 0, maximum: 23 }, label: { type: 'string', maxLength: 8 } },
      required: ['hour'],
      additionalProperties: false,
    },
  },
};

function checkCall(call, what) {
  assert.equal(call.type, 'function', what);
  assert.match(call.id, /^call_/, what);
  const args = JSON.parse(call.function.arguments);
  if (call.function.name === 'get_weather') {
    assert.deepEqual(Object.keys(args).sort(), ['city', 'unit'], what);
    assert.ok(typeof args.city === 'string' && [...args.city].length <= 12, what);
    assert.ok(['c', 'f'].includes(args.unit), what);
  } else {
    assert.equal(call.function.name, 'set_alarm', what);
    assert.ok(Number.isInteger(args.hour) && args.hour >= 0 && args.hour <= 23, what);
    for (const k of Object.keys(args)) assert.ok(['hour', 'label'].includes(k), what);
    if ('label' in args) assert.ok(typeof args.label === 'string' && [...args.label].length <= 8, what);
  }
}

test('tool_choice required: valid calls, finish_reason tool_calls', async () => {
  let complete = 0;
  // parallel_tool_calls true (the default) lets the model go on with more
  // calls; stories260K hardly ever ends them, so max tokens may cut one.
  for (const [seed, parallel] of [[1, true], [2, false], [3, false], [4, false]]) {
    const r = await client.chat.completions.create({
      model: MODEL, messages: MESSAGES, max_completion_tokens: 300, temperature: 1, seed,
      tools: [WEATHER, ALARM], tool_choice: 'required', parallel_tool_calls: parallel,
    });
    const c = r.choices[0];
    const what = JSON.stringify(c);
    // A random-ish model may go on calling until max tokens cut a call: the
    // calls before it are still whole and valid, the reason is "length".
    assert.ok(['tool_calls', 'length'].includes(c.finish_reason), what);
    assert.ok(c.message.tool_calls.length >= 1, what);
    for (const call of c.message.tool_calls) checkCall(call, what);
    if (!parallel) assert.equal(c.finish_reason, 'tool_calls', what);
    if (c.finish_reason === 'tool_calls') {
      complete++;
      assert.equal(c.message.content, null, what);
    }
    assert.equal(new Set(c.message.tool_calls.map((t) => t.id)).size, c.message.tool_calls.length);
  }
  assert.ok(complete > 0, 'no request ended its calls itself');
});

test('tool_choice names a function; parallel_tool_calls false gives one call', async () => {
  for (const seed of [5, 6]) {
    const r = await client.chat.completions.create({
      model: MODEL, messages: MESSAGES, max_completion_tokens: 400, temperature: 1, seed,
      tools: [WEATHER, ALARM], tool_choice: { type: 'function', function: { name: 'set_alarm' } },
      parallel_tool_calls: false,
    });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls', JSON.stringify(c));
    assert.equal(c.message.tool_calls.length, 1);
    assert.equal(c.message.tool_calls[0].function.name, 'set_alarm');
    checkCall(c.message.tool_calls[0], JSON.stringify(c));
  }
});

test('tool call arguments stream incrementally, as OpenAI streams them', async () => {
  for (const seed of [8, 9]) {
    const s = await client.chat.completions.create({
      model: MODEL, messages: MESSAGES, max_completion_tokens: 400, temperature: 1, seed,
      tools: [WEATHER], tool_choice: 'required', parallel_tool_calls: false, stream: true,
    });
    const calls = [];
    const argDeltas = [];
    let finish = null;
    for await (const chunk of s) {
      const c = chunk.choices[0];
      if (!c) continue;
      if (c.finish_reason) finish = c.finish_reason;
      for (const d of (c.delta && c.delta.tool_calls) || []) {
        const what = JSON.stringify(d);
        if (!calls[d.index]) {
          // The first delta of a call: index, id, type and name, arguments "".
          assert.equal(d.index, calls.length, what);
          assert.match(d.id, /^call_/, what);
          assert.equal(d.type, 'function', what);
          assert.equal(d.function.name, 'get_weather', what);
          assert.equal(d.function.arguments, '', what);
          calls[d.index] = { id: d.id, type: d.type, function: { name: d.function.name, arguments: '' } };
          argDeltas[d.index] = 0;
          continue;
        }
        // Later deltas: argument fragments only, of the call that is open.
        assert.equal(d.index, calls.length - 1, what);
        assert.equal(d.id, undefined, what);
        assert.equal(d.function.name, undefined, what);
        assert.ok(d.function.arguments.length > 0, what);
        calls[d.index].function.arguments += d.function.arguments;
        argDeltas[d.index]++;
      }
    }
    assert.equal(finish, 'tool_calls');
    assert.equal(calls.length, 1);
    const what = JSON.stringify(calls);
    checkCall(calls[0], what); // the fragments join into valid, schema-valid arguments
    // {"city": "...", "unit": "c"} takes many tokens of stories260K.
    assert.ok(argDeltas[0] > 1, `${argDeltas[0]} argument deltas: ${what}`);
  }
});

test('parallel calls stream each while it is generated', async () => {
  const s = await client.chat.completions.create({
    model: MODEL, messages: MESSAGES, max_completion_tokens: 300, temperature: 1, seed: 1,
    tools: [WEATHER, ALARM], tool_choice: 'required', stream: true,
  });
  const calls = [];
  const t0 = performance.now();
  let firstCallAt = -1;
  let finish = null;
  for await (const chunk of s) {
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.finish_reason) finish = c.finish_reason;
    for (const d of (c.delta && c.delta.tool_calls) || []) {
      if (firstCallAt < 0) firstCallAt = performance.now() - t0;
      if (!calls[d.index]) calls[d.index] = { id: '', type: 'function', function: { name: '', arguments: '' } };
      const t = calls[d.index];
      if (d.id) t.id = d.id;
      if (d.function && d.function.name) t.function.name += d.function.name;
      if (d.function && d.function.arguments) t.function.arguments += d.function.arguments;
    }
  }
  const total = performance.now() - t0;
  // stories260K keeps calling until max tokens cut one: the first call came
  // while it went on with the others, long before the end.
  assert.ok(['length', 'tool_calls'].includes(finish));
  assert.ok(calls.length >= 2, JSON.stringify(calls));
  for (const call of calls) checkCall(call, JSON.stringify(calls));
  assert.ok(firstCallAt >= 0 && firstCallAt < 0.6 * total, `first call after ${firstCallAt} ms of ${total} ms`);
});

test('tool_choice none and auto answer with text; earlier calls and results render', async () => {
  const history = [
    ...MESSAGES,
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"c"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 21}' },
  ];
  for (const tool_choice of ['none', 'auto']) {
    const r = await client.chat.completions.create({
      model: MODEL, messages: history, max_completion_tokens: 16, temperature: 0, tools: [WEATHER], tool_choice,
    });
    const c = r.choices[0];
    assert.equal(typeof c.message.content, 'string');
    assert.ok(['stop', 'length'].includes(c.finish_reason));
    assert.ok(!c.message.tool_calls || c.message.tool_calls.length === 0);
  }
});

test('bad tools and tool_choice are refused naming the field', async () => {
  const bad = [
    [{ tools: [WEATHER], tool_choice: { type: 'function', function: { name: 'nope' } } }, /tool_choice/],
    [{ tools: [{ type: 'function', function: { name: 'bad name!' } }] }, /tools/],
    [{ tools: [WEATHER, WEATHER] }, /twice/],
    [{ tool_choice: 'required' }, /tool_choice/],
    [{ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { not: {} } } } } }], tool_choice: 'required' }, /not/],
    [{ tools: [WEATHER], tool_choice: 'required', response_format: { type: 'json_object' } }, /response_format/],
  ];
  for (const [extra, re] of bad) {
    await assert.rejects(client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_completion_tokens: 8, ...extra }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
      assert.match(e.message, re);
      return true;
    });
  }
});

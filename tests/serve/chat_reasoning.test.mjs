// chat_reasoning: `qiao chat` with a reasoning model (a tiny random model
// over the real Qwen3 vocabulary, tiny_model.mjs; --grammar makes it write a
// reply with thinking). The thinking goes to stderr ("[thinking] " when
// stderr is not a terminal), the answer to stdout, and the history keeps
// only the answer: the second turn's prompt is what `qiao template | qiao
// tokenize` make of the conversation with the answer alone. With Qwen3's own
// template that equals the conversation with the whole reply (the template
// drops the thinking itself); with a template that keeps what it is given,
// it does not, so a history holding the thinking would show.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { QIAO_BIN, SERVE_DIR, sharedPath, tmpDir } from './lib/serve.mjs';
import { writeTinyModel } from './lib/tiny_model.mjs';

const run = promisify(execFile);
const REPLY = '<think>\nI should greet.\n</think>\n\nHello there!';
const KEEPS_ALL = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}" +
  '{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}';
let dir;
const models = {};

before(() => {
  dir = tmpDir('chat-reasoning');
  const tokenizerJson = sharedPath('tokenizers/qwen3/tokenizer.json');
  const qwenConfig = sharedPath('tokenizers/qwen3/tokenizer_config.json');
  const withTemplate = (t) => ({ ...JSON.parse(fs.readFileSync(qwenConfig, 'utf8')), chat_template: t });
  models.qwen = writeTinyModel(path.join(dir, 'qwen3'), { tokenizerJson, tokenizerConfig: qwenConfig }).dir;
  models.keeps = writeTinyModel(path.join(dir, 'keeps'), { tokenizerJson, tokenizerConfig: withTemplate(KEEPS_ALL) }).dir;
  const open = fs.readFileSync(path.join(SERVE_DIR, 'think_open_template.jinja'), 'utf8');
  models.open = writeTinyModel(path.join(dir, 'open'), { tokenizerJson, tokenizerConfig: withTemplate(open) }).dir;
});

after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function grammarFile(text) {
  const p = path.join(dir, `g${Math.random().toString(16).slice(2)}.gbnf`);
  fs.writeFileSync(p, `root ::= ${JSON.stringify(text)}\n`);
  return p;
}

// Runs `qiao chat` with the lines on stdin; resolves { code, stdout, stderr }.
function chat(model, lines, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(QIAO_BIN, ['chat', '-m', model, '--temp', '0', '-t', '1', '--verbose', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('error', reject);
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(lines.join('\n') + '\n');
  });
}

// The prompt token count of a conversation, by `qiao template | qiao tokenize`.
async function promptTokens(model, messages) {
  const m = path.join(dir, 'messages.json');
  fs.writeFileSync(m, JSON.stringify(messages));
  const rendered = (await run(QIAO_BIN, ['template', '-m', model, '--messages', m, '--add-generation-prompt'], { maxBuffer: 1 << 24 })).stdout;
  const r = path.join(dir, 'rendered.txt');
  fs.writeFileSync(r, rendered);
  const ids = (await run(QIAO_BIN, ['tokenize', '-m', model, '-f', r, '--no-bos'], { maxBuffer: 1 << 24 })).stdout;
  return ids.trim().split(/\s+/).length;
}

const turnTokens = (stderr, turn) => {
  const m = new RegExp(`^chat: turn ${turn}: reused \\d+ of (\\d+) prompt tokens`, 'm').exec(stderr);
  assert.ok(m, stderr);
  return Number(m[1]);
};

const history = (reply) => [
  { role: 'user', content: 'Hi' }, { role: 'assistant', content: reply }, { role: 'user', content: 'Again' },
];

test('the thinking on stderr, the answer on stdout; the history keeps the answer (Qwen3 template)', async () => {
  const r = await chat(models.qwen, ['Hi', 'Again'], ['-n', '40', '--grammar', grammarFile(REPLY)]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Hello there!\nHello there!\n');
  assert.equal(r.stderr.match(/^\[thinking\] I should greet\.$/gm).length, 2, r.stderr);
  const answerOnly = await promptTokens(models.qwen, history('Hello there!'));
  assert.equal(turnTokens(r.stderr, 2), answerOnly);
  // Qwen3's template drops the thinking of earlier turns by itself.
  assert.equal(await promptTokens(models.qwen, history(REPLY)), answerOnly);
});

test('with a template that keeps what it is given, the thinking is still not sent back', async () => {
  const r = await chat(models.keeps, ['Hi', 'Again'], ['-n', '40', '--grammar', grammarFile(REPLY)]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Hello there!\nHello there!\n');
  const answerOnly = await promptTokens(models.keeps, history('Hello there!'));
  assert.equal(turnTokens(r.stderr, 2), answerOnly);
  assert.notEqual(await promptTokens(models.keeps, history(REPLY)), answerOnly);
});

test('--hide-reasoning, --reasoning-format none, a cut reply, and a template that opens the thinking', async () => {
  const hidden = await chat(models.qwen, ['Hi'], ['-n', '40', '--hide-reasoning', '--grammar', grammarFile(REPLY)]);
  assert.equal(hidden.stdout, 'Hello there!\n');
  assert.doesNotMatch(hidden.stderr, /thinking|greet/);
  const none = await chat(models.qwen, ['Hi'], ['-n', '40', '--reasoning-format', 'none', '--grammar', grammarFile(REPLY)]);
  assert.equal(none.stdout, REPLY + '\n');
  const cut = await chat(models.qwen, ['Hi'], ['-n', '4', '--grammar', grammarFile(REPLY)]);
  assert.equal(cut.code, 0, cut.stderr);
  assert.equal(cut.stdout, '\n');
  assert.match(cut.stderr, /^\[thinking\] I\b.*$/m);
  // The prompt ends with <think>\n: the reply begins inside the thinking.
  const open = await chat(models.open, ['Hi'], ['-n', '40', '--grammar', grammarFile('I should greet.\n</think>\n\nHello there!')]);
  assert.equal(open.code, 0, open.stderr);
  assert.equal(open.stdout, 'Hello there!\n');
  assert.match(open.stderr, /^\[thinking\] I should greet\.$/m);
  const bad = await chat(models.qwen, ['Hi'], ['--reasoning-format', 'r1']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--reasoning-format/);
});

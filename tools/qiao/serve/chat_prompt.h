/* Chat messages to prompt tokens: the `messages` of a chat request are
 * checked, normalized to {role, content} with string content, rendered with
 * the model's chat template (or --chat-template) and tokenized. */
#ifndef QIAO_SERVE_CHAT_PROMPT_H
#define QIAO_SERVE_CHAT_PROMPT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "errors.h"

/* On success *ids (n) are malloc'd, and so is *rendered (the prompt text)
 * when `rendered` is not NULL. On failure *e says why (400 naming
 * "messages..." for what the client sent). */
/* `tools` (may be NULL): the request's tools array, given to the template
 * as `tools`. Assistant tool_calls, tool_call_id, name and reasoning_content
 * (Qwen3's template renders it in tool-calling turns) are passed on; with
 * `args_as_object` a call's arguments string is given as the object it
 * holds (what Qwen's and Llama's templates expect; DeepSeek's takes text).
 * `kwargs` (may be NULL): the request's chat_template_kwargs object, its
 * members given to the template as variables (e.g. Qwen3's
 * enable_thinking); the variables the server sets cannot be replaced. */
bool serve_chat_prompt(serve_app *app, json_object *messages, json_object *tools,
                       json_object *kwargs, bool args_as_object, int32_t **ids, size_t *n,
                       char **rendered, serve_error *e);

#endif

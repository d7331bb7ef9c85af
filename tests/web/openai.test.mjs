// `pocketllm serve` through the official openai npm client (streaming and
// not), llama.cpp's /completion, the chat store API, request errors, the API
// key, disconnects and queue order — against a running server on a shared model.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { request } from 'node:http';
import { rmSync } from 'node:fs';
import { startServer, tempDir, haveModel, until, health, readSSE, postJSON } from './helpers.mjs';

const MODEL = 'kjv-llama-q8_0';
const skip = haveModel(MODEL + '.gguf') ? false : `../shared/models/${MODEL}.gguf not found`;
let srv, client, dir;

before(async () => {
  if (skip) return;
  dir = tempDir();
  srv = await startServer({ db: dir + '/chats.db', args: ['-c', '1024', '--parallel', '1'] });
  client = new OpenAI({ baseURL: srv.url + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 120000 });
});

after(async () => {
  if (srv) {
    const x = await srv.stop();
    assert.equal(x.code, 0, 'server exit: ' + srv.stderr());
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const user = (content) => ({ role: 'user', content });

test('models.list shows the served model', { skip }, async () => {
  const list = await client.models.list();
  const ids = list.data.map((m) => m.id);
  assert.deepEqual(ids, [MODEL]);
  assert.equal(list.data[0].object, 'model');
});

test('chat completion, not streamed: OpenAI shape and usage', { skip }, async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'system', content: 'Speak as the prophets.' }, user('Who made the sea?')],
    max_tokens: 16, temperature: 0,
  });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.model, MODEL);
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.ok(typeof c.message.content === 'string' && c.message.content.length > 0);
  assert.ok(['stop', 'length'].includes(c.finish_reason));
  assert.ok(r.usage.prompt_tokens > 5);
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 16);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('chat completion, streamed: role, content chunks, finish reason, usage', { skip }, async () => {
  const stream = await client.chat.completions.create({
    model: MODEL, messages: [user('Tell of the flood.')], max_tokens: 24, temperature: 0, ignore_eos: true,
    stream: true, stream_options: { include_usage: true },
  });
  let text = '', contentChunks = 0, finish = null, usage = null, first = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (!first) first = chunk;
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.delta.content) { text += c.delta.content; contentChunks++; }
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(first.choices[0].delta.role, 'assistant');
  assert.ok(contentChunks > 1, `${contentChunks} content chunks`);
  assert.ok(text.length > 0);
  assert.ok(['stop', 'length'].includes(finish));
  assert.ok(usage && usage.completion_tokens >= contentChunks - 1 && usage.completion_tokens <= 24);
});

test('a follow-up turn reuses the KV cache (only new tokens evaluated)', { skip }, async () => {
  const msgs = [{ role: 'system', content: 'Answer briefly.' }, user('Who led Israel out of Egypt?')];
  const r1 = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 12, temperature: 0 });
  msgs.push({ role: 'assistant', content: r1.choices[0].message.content }, user('And who followed him?'));
  const r2 = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 4, temperature: 0 });
  const cached = r2.usage.prompt_tokens_details.cached_tokens;
  // Everything of turn 1 (its prompt and the reply the cache holds) is reused.
  assert.ok(cached >= r1.usage.prompt_tokens + r1.usage.completion_tokens - 1,
    `cached ${cached}, turn 1 had ${r1.usage.prompt_tokens}+${r1.usage.completion_tokens}`);
  assert.ok(cached < r2.usage.prompt_tokens);
});

test('text completion, streamed and not', { skip }, async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'In the beginning', max_tokens: 8, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.ok(r.choices[0].text.length > 0);
  assert.equal(r.usage.completion_tokens, 8);
  assert.equal(r.choices[0].finish_reason, 'length');
  const stream = await client.completions.create({ model: MODEL, prompt: 'In the beginning', max_tokens: 8, temperature: 0, stream: true });
  let text = '', finish = null;
  for await (const chunk of stream) {
    text += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(finish, 'length');
  assert.ok(text.length > 0);
});

test('errors come as OpenAI error objects with 4xx statuses', { skip }, async () => {
  await assert.rejects(client.chat.completions.create({ model: 'gpt-4o', messages: [user('hi')] }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    assert.equal(e.code, 'model_not_found');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [] }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal(e.param, 'messages');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [{ role: 'tool', content: 'x' }] }),
    OpenAI.BadRequestError);
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [user('hi')], temperature: 'hot' }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.param, 'temperature');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [user('hi')], n: 2 }), OpenAI.BadRequestError);
  // More than the context holds, even after leaving out old turns.
  const long = 'and it came to pass '.repeat(400);
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [user(long)], max_tokens: 4 }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.code, 'context_length_exceeded');
    return true;
  });
  await assert.rejects(client.completions.create({ model: MODEL, prompt: long, max_tokens: 4, stream: true }), (e) => {
    assert.equal(e.code, 'context_length_exceeded');
    return true;
  });
  assert.equal((await health(srv.url)).slots.busy, 0);
});

test('malformed, oversized and misrouted requests get JSON errors', { skip }, async () => {
  const cases = [
    [await postJSON(srv.url, '/v1/chat/completions', '{"messages": [', {}), 400],
    [await postJSON(srv.url, '/v1/chat/completions', '[1,2]', {}), 400],
    [await postJSON(srv.url, '/v1/chat/completions', '{"messages":[{"role":"user","content":"a"}],"stop":[1]}', {}), 400],
    [await postJSON(srv.url, '/v1/chat/completions', '{"messages":[{"role":"user","content":"a"}],"max_tokens":-5}', {}), 400],
    [await postJSON(srv.url, '/v1/completions', { prompt: 'x'.repeat(2 << 20) }), 413],
    [await fetch(srv.url + '/v1/chat/completions'), 405],
    [await fetch(srv.url + '/v1/nothing'), 404],
    [await fetch(srv.url + '/v1/chats/999999'), 404],
    // what a form or script on another site could send without a CORS preflight
    [await fetch(srv.url + '/v1/chats', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '{}' }), 415],
  ];
  for (const [res, status] of cases) {
    assert.equal(res.status, status, res.url);
    const body = await res.json();
    assert.equal(typeof body.error.message, 'string');
    assert.ok(body.error.message.length > 0);
  }
});

test('a Host that does not name this machine is refused (DNS rebinding)', { skip }, async () => {
  const status = (host) => new Promise((res, rej) => {
    const req = request({ host: '127.0.0.1', port: srv.port, path: '/v1/chats', headers: { Host: host } }, (r) => {
      r.resume();
      res(r.statusCode);
    });
    req.on('error', rej);
    req.end();
  });
  assert.equal(await status('evil.example:' + srv.port), 403);
  assert.equal(await status('localhost:' + srv.port), 200);
  assert.equal(await status('127.0.0.1'), 200);
});

test("llama.cpp's POST /completion, streamed and not", { skip }, async () => {
  const r = await (await postJSON(srv.url, '/completion', { prompt: 'And God said', n_predict: 6, temperature: 0 })).json();
  assert.equal(typeof r.content, 'string');
  assert.equal(r.stop, true);
  assert.equal(r.tokens_predicted, 6);
  assert.ok(r.tokens_evaluated >= 3);
  assert.ok(r.timings.predicted_n === 6);
  const res = await postJSON(srv.url, '/completion', { prompt: 'And God said', n_predict: 6, temperature: 0, stream: true });
  assert.match(res.headers.get('content-type'), /text\/event-stream/);
  const { events } = await readSSE(res);
  assert.ok(events.length >= 2);
  assert.equal(events.at(-1).stop, true);
  assert.ok(events.slice(0, -1).every((e) => e.stop === false && typeof e.content === 'string'));
});

test('the chat store: create, add a message, read back, list, delete', { skip }, async () => {
  const chat = await (await postJSON(srv.url, '/v1/chats', { system: 'Be brief.' })).json();
  assert.ok(chat.id > 0);
  const res = await postJSON(srv.url, `/v1/chats/${chat.id}/messages`, { content: 'Who was Abraham?', max_tokens: 8, temperature: 0 });
  assert.equal(res.status, 200);
  const reply = await res.json();
  const content = reply.choices[0].message.content;
  const got = await (await fetch(`${srv.url}/v1/chats/${chat.id}`)).json();
  assert.deepEqual(got.messages.map((m) => [m.role, m.content]),
    [['system', 'Be brief.'], ['user', 'Who was Abraham?'], ['assistant', content]]);
  assert.equal(got.messages[2].id, reply.pocketllm.message_id);
  assert.equal(got.messages[2].tokens, reply.usage.completion_tokens);
  assert.equal(got.title, 'Who was Abraham?');
  const list = await (await fetch(srv.url + '/v1/chats')).json();
  assert.ok(list.data.some((c) => c.id === chat.id && c.n_messages === 3));
  const del = await (await fetch(`${srv.url}/v1/chats/${chat.id}`, { method: 'DELETE' })).json();
  assert.equal(del.deleted, true);
  assert.equal((await fetch(`${srv.url}/v1/chats/${chat.id}`)).status, 404);
});

test('a client that disconnects mid-stream cancels its generation', { skip }, async () => {
  // A stored chat keeps what happened: a reply cut short by its client is
  // saved with finish "cancelled" and the tokens it got to.
  const chat = await (await postJSON(srv.url, '/v1/chats', {})).json();
  const res = await postJSON(srv.url, `/v1/chats/${chat.id}/messages`,
    { content: 'Recite the generations of Adam.', max_tokens: 900, ignore_eos: true, stream: true });
  let chunks = 0;
  const { aborted } = await readSSE(res, () => ++chunks < 3); // three events, then hang up
  assert.ok(aborted);
  const reply = await until(async () => {
    const c = await (await fetch(`${srv.url}/v1/chats/${chat.id}`)).json();
    return c.messages.find((m) => m.role === 'assistant');
  }, 'the cancelled reply to be stored', 60000);
  assert.equal(reply.finish, 'cancelled');
  assert.ok(reply.tokens >= 3 && reply.tokens < 900, `${reply.tokens} tokens`);
  await until(async () => (await health(srv.url)).slots.busy === 0, 'the slot to be free', 20000);
  const r = await client.chat.completions.create({ model: MODEL, messages: [user('Amen?')], max_tokens: 2 });
  assert.equal(r.choices.length, 1);
});

test('waiting requests are served in arrival order', { skip }, async () => {
  // One slot: a long streamed completion holds it while three more queue. The
  // server sends a stream nothing until its job runs, and each of the three hangs
  // up as soon as its first text arrives, which frees the slot for the next one.
  // So the order in which text arrives is the order of service, with no race
  // (the order in which whole replies reach the client is not: a finished job's
  // reply can still be on its way while the next one runs and replies).
  const open = (prompt) => {
    const ac = new AbortController();
    const res = fetch(srv.url + '/v1/completions', {
      method: 'POST', signal: ac.signal, headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt, max_tokens: 900, ignore_eos: true, stream: true }),
    });
    return { ac, res };
  };
  const long = open('The law of the LORD');
  await (await long.res).body.getReader().read(); // it is running
  const queued = [];
  for (const [i, name] of ['B', 'C', 'D'].entries()) {
    queued.push({ name, ...open('Say ' + name) });
    await until(async () => (await health(srv.url)).slots.queued === i + 1, `${name} to be queued`, 20000);
  }
  const order = [];
  const served = queued.map(async (q) => {
    await (await q.res).body.getReader().read();
    order.push(q.name);
    q.ac.abort();
  });
  long.ac.abort(); // hang up: frees the slot
  await Promise.all(served);
  assert.deepEqual(order, ['B', 'C', 'D']);
  await until(async () => (await health(srv.url)).slots.busy === 0, 'the slot to be free', 20000);
});

test('an API key is required when set', { skip }, async (t) => {
  const dir = tempDir(t);
  const keyed = await startServer({ db: dir + '/k.db', args: ['--api-key', 'sesame', '-c', '256'] });
  try {
    const bad = new OpenAI({ baseURL: keyed.url + '/v1', apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(bad.models.list(), OpenAI.AuthenticationError);
    const none = await fetch(keyed.url + '/v1/models');
    assert.equal(none.status, 401);
    const good = new OpenAI({ baseURL: keyed.url + '/v1', apiKey: 'sesame', maxRetries: 0 });
    assert.equal((await good.models.list()).data.length, 1);
    assert.equal((await fetch(keyed.url + '/health')).status, 200); // open: for probes
    assert.equal((await fetch(keyed.url + '/')).status, 200);       // the page asks for the key
  } finally {
    assert.equal((await keyed.stop()).code, 0);
  }
});

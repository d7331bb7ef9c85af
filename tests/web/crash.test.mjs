// kill -9 the server in the middle of a reply, restart it on the same files:
// every message completed before is still there, exactly; the acknowledged
// user message of the interrupted turn too; the half reply is not. With
// --kv-dir, the reopened chat continues from its saved KV state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, tempDir, haveModel, readSSE, postJSON } from './helpers.mjs';

const skip = haveModel('kjv-llama-q8_0.gguf') ? false : '../shared/models/kjv-llama-q8_0.gguf not found';

test('kill -9 mid-reply loses nothing that was acknowledged', { skip, timeout: 300000 }, async (t) => {
  const dir = tempDir(t);
  const opts = { db: dir + '/chats.db', args: ['-c', '1024', '--kv-dir', dir] };
  let srv = await startServer(opts);
  let last;
  let chatId;
  try {
    chatId = (await (await postJSON(srv.url, '/v1/chats', { system: 'Answer as the scriptures do.' })).json()).id;
    for (const q of ['Who built the ark?', 'How many days did it rain?', 'What came after the flood?']) {
      const res = await postJSON(srv.url, `/v1/chats/${chatId}/messages`, { content: q, max_tokens: 12, temperature: 0 });
      assert.equal(res.status, 200);
      last = await res.json();
    }
  } catch (e) {
    await srv.stop();
    throw e;
  }
  const before = await (await fetch(`${srv.url}/v1/chats/${chatId}`)).json();
  assert.equal(before.messages.length, 7);
  // A long reply; once it streams, kill the server.
  const res = await postJSON(srv.url, `/v1/chats/${chatId}/messages`,
    { content: 'Tell all the generations.', max_tokens: 900, ignore_eos: true, stream: true });
  let events = 0;
  const reading = readSSE(res, () => { events++; return true; }).catch(() => 'connection lost');
  await new Promise((r) => { const i = setInterval(() => { if (events >= 2) { clearInterval(i); r(); } }, 5); });
  const killed = await srv.kill9();
  assert.equal(killed.signal, 'SIGKILL');
  await reading;

  srv = await startServer(opts);
  try {
    const after = await (await fetch(`${srv.url}/v1/chats/${chatId}`)).json();
    assert.deepEqual(after.messages.slice(0, 7), before.messages);
    assert.equal(after.messages.length, 8, JSON.stringify(after.messages.slice(7)));
    assert.equal(after.messages[7].role, 'user');
    assert.equal(after.messages[7].content, 'Tell all the generations.');
    // The restarted server picks the chat up from its saved KV state.
    const next = await (await postJSON(srv.url, `/v1/chats/${chatId}/messages`, { content: 'Amen.', max_tokens: 4 })).json();
    const cached = next.usage.prompt_tokens_details.cached_tokens;
    assert.ok(cached >= last.usage.prompt_tokens, `cached ${cached} of ${next.usage.prompt_tokens}`);
    const final = await (await fetch(`${srv.url}/v1/chats/${chatId}`)).json();
    assert.equal(final.messages.length, 10);
  } finally {
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
});

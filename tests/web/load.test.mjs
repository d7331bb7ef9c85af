// Load: 8 concurrent streaming clients x 20 requests each on loopback. Every
// request completes, the server stays up and healthy, and its resident memory
// (sampled from /health while the load runs) stays inside its memory plan.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, tempDir, haveModel, health, readSSE, postJSON, ASAN } from './helpers.mjs';

const skip = haveModel('stories260K.gguf') ? false : '../shared/models/stories260K.gguf not found';
const CLIENTS = 8, REQUESTS = 20;

test(`${CLIENTS} streaming clients x ${REQUESTS} requests: all complete, memory within the plan`, { skip, timeout: 600000 },
  async (t) => {
    const dir = tempDir(t);
    const srv = await startServer({ modelName: 'stories260K.gguf', db: dir + '/chats.db', args: ['--parallel', '2', '-c', '128'] });
    try {
      const plan = (await health(srv.url)).memory.plan_bytes;
      let maxRss = 0, sampling = true;
      const sampler = (async () => {
        while (sampling) {
          maxRss = Math.max(maxRss, (await health(srv.url)).memory.rss_bytes);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      let completed = 0;
      const client = async (c) => {
        for (let i = 0; i < REQUESTS; i++) {
          const res = await postJSON(srv.url, '/v1/chat/completions', {
            messages: [{ role: 'user', content: `Client ${c} asks question ${i}: once upon a time?` }],
            max_tokens: 16, ignore_eos: true, stream: true, stream_options: { include_usage: true },
          });
          assert.equal(res.status, 200, `client ${c} request ${i}`);
          const { events, done } = await readSSE(res);
          assert.ok(done, 'no [DONE]');
          const finish = events.map((e) => e.choices[0] && e.choices[0].finish_reason).filter(Boolean);
          assert.equal(finish.length, 1);
          const usage = events.at(-1).usage;
          assert.ok(usage && usage.completion_tokens >= 1 && usage.completion_tokens <= 16);
          completed++;
        }
      };
      await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
      sampling = false;
      await sampler;
      assert.equal(completed, CLIENTS * REQUESTS);
      const h = await health(srv.url);
      assert.equal(h.slots.busy, 0);
      assert.equal(h.slots.queued, 0);
      maxRss = Math.max(maxRss, h.memory.rss_bytes);
      t.diagnostic(`max RSS ${(maxRss / 1048576).toFixed(1)} MiB, plan ${(plan / 1048576).toFixed(1)} MiB`);
      // AddressSanitizer's shadow memory and quarantine are not in any plan.
      if (!ASAN) assert.ok(maxRss > 0 && maxRss <= plan, `RSS ${maxRss} exceeds the plan ${plan}`);
    } finally {
      const x = await srv.stop();
      assert.equal(x.code, 0, srv.stderr());
    }
  });

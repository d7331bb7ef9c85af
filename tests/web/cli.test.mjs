// `pocketllm chat` in a pipe: a reply per line, /save, /reset, /load (the KV
// cache comes back with the messages), Ctrl-C (SIGINT) stops a reply and at
// the prompt does not quit, /quit leaves with status 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { BIN, model, tempDir, haveModel } from './helpers.mjs';

const skip = haveModel('kjv-llama-q8_0.gguf') ? false : '../shared/models/kjv-llama-q8_0.gguf not found';

function startChat(args) {
  const proc = spawn(BIN, ['chat', '-m', model('kjv-llama-q8_0.gguf'), '-t', '2', '-c', '512', '--temp', '0', ...args],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', err = '';
  proc.stdout.on('data', (d) => { out += d.toString(); });
  proc.stderr.on('data', (d) => { err += d.toString(); });
  const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  let mark = 0;
  return {
    proc, exited,
    out: () => out, err: () => err,
    // Wait until the output after the last mark matches re; move the mark past it.
    async expect(re, timeoutMs = 60000) {
      const t0 = Date.now();
      for (;;) {
        const m = out.slice(mark).match(re);
        if (m) { mark += m.index + m[0].length; return m; }
        if (proc.exitCode !== null || Date.now() - t0 > timeoutMs)
          throw new Error(`expected ${re}; output after mark: ${JSON.stringify(out.slice(mark))}; stderr: ${err}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    send(line) { proc.stdin.write(line + '\n'); },
  };
}

test('chat: replies, /save, /reset, /load with the KV cache, /quit', { skip, timeout: 120000 }, async (t) => {
  const file = join(tempDir(t), 'conv.plchat');
  const c = startChat(['-n', '12', '--ignore-eos', '-s', 'Answer briefly.']);
  await c.expect(/> $/);
  c.send('Who was Noah?');
  await c.expect(/\S[^]*\n> $/); // a reply, then the prompt again
  c.send('/save ' + file);
  const saved = await c.expect(/\(saved 3 messages, (\d+) tokens cached, to [^)]*\)\n> /);
  assert.ok(Number(saved[1]) > 10);
  c.send('/reset');
  await c.expect(/\(conversation forgotten\)\n> /);
  c.send('/load ' + file);
  const loaded = await c.expect(/\(loaded 3 messages, (\d+) tokens cached\)\n> /);
  assert.equal(loaded[1], saved[1]);
  c.send('/nonsense');
  await c.expect(/unknown command \/nonsense[^\n]*\n> /);
  c.send('/quit');
  assert.deepEqual(await c.exited, { code: 0, signal: null });
});

test('chat: Ctrl-C stops a reply without quitting', { skip, timeout: 120000 }, async () => {
  const c = startChat(['-n', '-1', '--ignore-eos']);
  await c.expect(/> $/);
  c.send('Recite all the generations of Adam.');
  await c.expect(/\S/); // the reply has started
  c.proc.kill('SIGINT');
  await c.expect(/ \[stopped\]\n> $/);
  c.proc.kill('SIGINT'); // at the prompt: a hint, no exit
  await c.expect(/Ctrl-C stops a reply[^\n]*\n> $/);
  c.send('Amen?'); // the conversation goes on
  await c.expect(/\S/);
  c.proc.kill('SIGINT');
  await c.expect(/ \[stopped\]\n> $/);
  c.send('/quit');
  assert.deepEqual(await c.exited, { code: 0, signal: null });
});

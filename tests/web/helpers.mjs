// Helpers for the tests in tests/web: start `pocketllm serve` on a free
// loopback port (--port 0; the server prints the port it got), wait for
// /health, stop it (SIGTERM, or SIGKILL for crash tests), temporary dirs.
// Environment (set by tests/web.sh): POCKETLLM_BIN, PL_SHARED, PL_BUILD_DIR.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const BIN = process.env.POCKETLLM_BIN || resolve('../../build/pocketllm');
export const SHARED = process.env.PL_SHARED || resolve('../../../shared');
export const BUILD_DIR = process.env.PL_BUILD_DIR || resolve('../../build');
export const ASAN = !!process.env.PL_ASAN;

export function model(name) {
  return join(SHARED, 'models', name);
}

export function haveModel(name) {
  return existsSync(model(name));
}

export function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'pl-web-'));
  if (t) t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// Resolve when `pred(text)` holds for the accumulated output of a stream.
function waitForOutput(stream, pred, what, timeoutMs) {
  return new Promise((res, rej) => {
    let buf = '';
    const timer = setTimeout(() => { cleanup(); rej(new Error(`timed out waiting for ${what}; got: ${buf.slice(-500)}`)); }, timeoutMs);
    const onData = (d) => {
      buf += d.toString();
      const m = pred(buf);
      if (m) { cleanup(); res(m); }
    };
    const onEnd = () => { cleanup(); rej(new Error(`stream ended waiting for ${what}; got: ${buf.slice(-500)}`)); };
    function cleanup() { clearTimeout(timer); stream.off('data', onData); stream.off('end', onEnd); }
    stream.on('data', onData);
    stream.on('end', onEnd);
  });
}

// Start a server; returns { url, port, proc, stderr(), stop(), kill9() }.
export async function startServer({ modelName = 'kjv-llama-q8_0.gguf', db, args = [], env = {}, timeoutMs = 60000 } = {}) {
  const argv = ['serve', '-m', model(modelName), '--port', '0', '--db', db, '-t', '2', ...args];
  const proc = spawn(BIN, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d.toString(); });
  const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  const m = await Promise.race([
    waitForOutput(proc.stdout, (s) => s.match(/listening on (http:\/\/127\.0\.0\.1:(\d+))/), 'the server to listen', timeoutMs),
    exited.then((x) => { throw new Error(`server exited (${JSON.stringify(x)}) before listening: ${err}`); }),
  ]);
  const url = m[1];
  proc.stdout.resume();
  // The port is open once the message is printed; still, poll /health so a
  // slow start (sanitizers) cannot race the first request.
  const t0 = Date.now();
  for (;;) {
    try {
      const r = await fetch(url + '/health');
      if (r.ok) break;
    } catch (e) { /* not yet */ }
    if (Date.now() - t0 > timeoutMs) throw new Error('server never became healthy: ' + err);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    port: Number(m[2]),
    proc,
    stderr: () => err,
    exited,
    // Graceful stop; resolves with the exit status. Sanitizer reports fail it.
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const x = await exited;
      if (/AddressSanitizer|LeakSanitizer|runtime error:/.test(err)) throw new Error('sanitizer report:\n' + err);
      return x;
    },
    async kill9() {
      proc.kill('SIGKILL');
      return exited;
    },
  };
}

// Poll fn() until it returns a truthy value (no fixed sleeps as synchronisation).
export async function until(fn, what, timeoutMs = 30000, everyMs = 20) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function health(url) {
  return (await fetch(url + '/health')).json();
}

// Read a server-sent-event response: returns the parsed events (and whether [DONE] came).
export async function readSSE(res, onEvent) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const events = [];
  let done = false;
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of block.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        if (line === 'data: [DONE]') { done = true; continue; }
        const ev = JSON.parse(line.slice(6));
        events.push(ev);
        if (onEvent && onEvent(ev) === false) { reader.cancel(); return { events, done, aborted: true }; }
      }
    }
  }
  return { events, done, aborted: false };
}

export async function postJSON(url, path, body, headers = {}) {
  return fetch(url + path, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

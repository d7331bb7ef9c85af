// The chat page in headless Chromium (Debian's chromium, driven by
// playwright-core): open it, send a message, watch the reply stream in,
// reload and find the chat persisted; the stop button; Markdown rendering.
// A screenshot is saved as BUILD_DIR/web-e2e.png.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, tempDir, haveModel, until, health, BUILD_DIR } from './helpers.mjs';

// /usr/bin/chromium is Debian's wrapper script; the binary itself works too.
const exe = [process.env.CHROMIUM, '/usr/lib/chromium/chromium', '/usr/bin/chromium', '/usr/bin/chromium-browser']
  .find((p) => p && existsSync(p));
const skip = !exe ? 'chromium is not installed (apt-get install chromium)'
  : !haveModel('kjv-llama-q8_0.gguf') ? '../shared/models/kjv-llama-q8_0.gguf not found' : false;

test('chat page: streamed reply, persisted across a reload, stop button, Markdown', { skip, timeout: 300000 }, async (t) => {
  const dir = tempDir(t);
  const srv = await startServer({ db: dir + '/chats.db', args: ['-c', '1024', '-n', '48'] });
  const browser = await chromium.launch({ executablePath: exe, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
    page.setDefaultTimeout(60000);
    await page.goto(srv.url + '/');
    await page.waitForSelector('body[data-ready="1"]');
    await until(async () => (await page.textContent('#model-info')).includes('kjv-llama-q8_0'), 'model info', 20000);
    assert.match(await page.textContent('#memory-info'), /MiB/);

    // Send a message; the reply arrives as server-sent events, in pieces.
    // (Greedy, 256 tokens: the page sends localStorage's options. The server
    // sends whatever text is ready when the client reads, so a reply that is
    // done before the first read comes in one piece: 32 tokens of this small
    // model once did, on a loaded CI machine.)
    await page.evaluate(() => localStorage.setItem('pocketllm-options',
      JSON.stringify({ temperature: 0, max_tokens: 256, ignore_eos: true })));
    const question = 'Who created the heaven and the earth?';
    await page.fill('#input', question);
    const sse = page.waitForResponse((r) => r.url().endsWith('/messages'));
    await page.press('#input', 'Enter');
    const resp = await sse;
    assert.match(resp.headers()['content-type'], /text\/event-stream/);
    const assistant = page.locator('.msg.assistant').last();
    await page.waitForSelector('.msg.assistant[data-done="1"]');
    const chunks = Number(await assistant.getAttribute('data-chunks'));
    const reply = await assistant.getAttribute('data-raw');
    assert.ok(chunks > 1, `the reply came in ${chunks} piece(s)`);
    assert.ok(reply.trim().length > 0);
    await page.screenshot({ path: join(BUILD_DIR, 'web-e2e.png'), fullPage: true });

    // Reload: the chat is in the list and reopens with both messages.
    await page.reload();
    await page.waitForSelector('body[data-ready="1"]');
    await page.waitForSelector('.msg.assistant');
    assert.deepEqual(await page.locator('#chat-list li .title').allTextContents(), [question]);
    assert.equal(await page.locator('.msg.user').first().textContent(), question);
    assert.equal(await page.locator('.msg.assistant').first().getAttribute('data-raw'), reply);

    // Stop a long reply from the page: the server stops generating.
    await page.evaluate(() => localStorage.setItem('pocketllm-options', JSON.stringify({ max_tokens: 900, ignore_eos: true })));
    await page.fill('#input', 'Recite all the generations.');
    await page.press('#input', 'Enter');
    await until(async () => Number(await page.locator('.msg.assistant').last().getAttribute('data-chunks')) >= 3,
      'the long reply to stream', 60000);
    await page.click('#stop');
    await page.waitForSelector('.msg.assistant[data-done="stopped"]');
    await until(async () => (await health(srv.url)).slots.busy === 0, 'the server to stop generating', 20000);
    const chatId = (await page.evaluate(() => location.hash)).replace('#chat-', '');
    const stored = await until(async () => {
      const c = await (await fetch(`${srv.url}/v1/chats/${chatId}`)).json();
      return c.messages.length === 4 && c.messages[3];
    }, 'the stopped reply to be stored', 20000);
    assert.equal(stored.finish, 'cancelled');
    assert.ok(stored.tokens < 900);

    // Markdown: code blocks, lists, emphasis; HTML in model text stays text.
    const html = await page.evaluate(() =>
      renderMarkdown('# Title\n\n- one\n- two\n\n```js\nif (a < b) x();\n```\n1. first\n2. second\n\n**bold** `code` <script>alert(1)</script>'));
    assert.match(html, /<h1>Title<\/h1>/);
    assert.match(html, /<ul><li>one<\/li><li>two<\/li><\/ul>/);
    assert.match(html, /<pre><code class="language-js">if \(a &lt; b\) x\(\);<\/code><\/pre>/);
    assert.match(html, /<ol><li>first<\/li><li>second<\/li><\/ol>/);
    assert.match(html, /<strong>bold<\/strong> <code>code<\/code> &lt;script&gt;/);
    assert.ok(!html.includes('<script>'));
  } finally {
    await browser.close();
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
});

// pocketllm chat page. Chats live on the server (/v1/chats, SQLite); the page
// keeps only the open chat's id in the URL hash, so a reload reopens it.
// Replies stream as server-sent events and are rendered as Markdown by the
// small renderer below, which escapes all HTML first (model text is data).
'use strict';

const $ = (sel) => document.querySelector(sel);
const state = { chatId: null, controller: null, key: localStorage.getItem('pocketllm-api-key') || '' };

function headers(json) {
  const h = {};
  if (json) h['Content-Type'] = 'application/json';
  if (state.key) h['Authorization'] = 'Bearer ' + state.key;
  return h;
}

async function api(path, opts = {}) {
  const res = await fetch(path, { ...opts, headers: headers(opts.body !== undefined) });
  if (res.status === 401) {
    const key = prompt('This server needs an API key:');
    if (key !== null) {
      state.key = key;
      localStorage.setItem('pocketllm-api-key', key);
      return api(path, opts);
    }
  }
  if (!res.ok) {
    let msg = res.status + ' ' + res.statusText;
    try { msg = (await res.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return res;
}

function showError(msg) {
  const el = $('#error');
  el.textContent = msg || '';
  el.hidden = !msg;
}

// ------------------------------------------------------------ markdown

function escapeHtml(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

// Inline markup on already-escaped text: code spans first (their content is
// left alone), then bold, italic and http(s) links.
function inline(s) {
  const parts = s.split(/(`[^`\n]+`)/);
  return parts.map((p, i) => {
    if (i % 2 === 1) return '<code>' + p.slice(1, -1) + '</code>';
    return p
      .replace(/\*\*([^*\n]+)\*\*/g, '<strong>$1</strong>')
      .replace(/(^|[^*\w])\*([^*\n]+)\*(?!\w)/g, '$1<em>$2</em>')
      .replace(/(^|[^\w])_([^_\n]+)_(?!\w)/g, '$1<em>$2</em>')
      .replace(/\[([^\]\n]+)\]\((https?:\/\/[^)\s]+)\)/g, '<a href="$2" target="_blank" rel="noopener">$1</a>');
  }).join('');
}

function renderMarkdown(src) {
  const lines = escapeHtml(src).split('\n');
  const out = [];
  let para = [], list = null;
  const flushPara = () => { if (para.length) { out.push('<p>' + inline(para.join('<br>')) + '</p>'); para = []; } };
  const flushList = () => { if (list) { out.push('<' + list.tag + '>' + list.items.map((x) => '<li>' + inline(x) + '</li>').join('') + '</' + list.tag + '>'); list = null; } };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^\s*```\s*([\w+-]*)\s*$/);
    if (fence) {
      flushPara(); flushList();
      const code = [];
      for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) code.push(lines[i]);
      const cls = fence[1] ? ' class="language-' + fence[1] + '"' : '';
      out.push('<pre><code' + cls + '>' + code.join('\n') + '</code></pre>');
      continue;
    }
    const h = line.match(/^(#{1,6})\s+(.*)$/);
    const ul = line.match(/^\s*[-*+]\s+(.*)$/);
    const ol = line.match(/^\s*\d+[.)]\s+(.*)$/);
    if (h) {
      flushPara(); flushList();
      out.push('<h' + h[1].length + '>' + inline(h[2]) + '</h' + h[1].length + '>');
    } else if (ul || ol) {
      flushPara();
      const tag = ul ? 'ul' : 'ol';
      if (list && list.tag !== tag) flushList();
      if (!list) list = { tag, items: [] };
      list.items.push((ul || ol)[1]);
    } else if (line.trim() === '') {
      flushPara(); flushList();
    } else {
      flushList();
      para.push(line);
    }
  }
  flushPara(); flushList();
  return out.join('');
}

// ------------------------------------------------------------ rendering

function addMessage(role, text, meta) {
  const el = document.createElement('div');
  el.className = 'msg ' + role;
  el.dataset.role = role;
  setMessageText(el, text);
  if (meta) {
    const m = document.createElement('div');
    m.className = 'meta';
    m.textContent = meta;
    el.appendChild(m);
  }
  $('#messages').appendChild(el);
  el.scrollIntoView({ block: 'end' });
  return el;
}

function setMessageText(el, text) {
  el.dataset.raw = text;
  if (el.dataset.role === 'assistant') el.innerHTML = renderMarkdown(text);
  else el.textContent = text;
}

function replyMeta(m) {
  if (!m.tokens) return '';
  const tps = m.gen_ms > 0 ? (m.tokens * 1000 / m.gen_ms).toFixed(1) : '?';
  return m.tokens + ' tokens, ' + tps + ' tok/s' + (m.finish && m.finish !== 'stop' ? ' (' + m.finish + ')' : '');
}

async function loadChats() {
  const res = await api('/v1/chats');
  const { data } = await res.json();
  const ul = $('#chat-list');
  ul.textContent = '';
  for (const c of data) {
    const li = document.createElement('li');
    li.dataset.id = c.id;
    if (c.id === state.chatId) li.classList.add('active');
    const t = document.createElement('span');
    t.className = 'title';
    t.textContent = c.title || 'New chat';
    const del = document.createElement('button');
    del.className = 'delete';
    del.type = 'button';
    del.title = 'Delete this chat';
    del.textContent = '×';
    del.addEventListener('click', (ev) => { ev.stopPropagation(); deleteChat(c.id); });
    li.append(t, del);
    li.addEventListener('click', () => openChat(c.id));
    ul.appendChild(li);
  }
}

async function openChat(id) {
  if (state.controller) return; // finish or stop the reply first
  const res = await api('/v1/chats/' + id);
  const chat = await res.json();
  state.chatId = chat.id;
  location.hash = 'chat-' + chat.id;
  $('#chat-title').textContent = chat.title || 'New chat';
  $('#messages').textContent = '';
  for (const m of chat.messages) addMessage(m.role, m.content, m.role === 'assistant' ? replyMeta(m) : '');
  showError('');
  await loadChats();
}

async function newChat() {
  if (state.controller) return;
  const res = await api('/v1/chats', { method: 'POST', body: '{}' });
  const chat = await res.json();
  await openChat(chat.id);
  $('#input').focus();
}

async function deleteChat(id) {
  if (!confirm('Delete this chat?')) return;
  await api('/v1/chats/' + id, { method: 'DELETE' });
  if (id === state.chatId) {
    state.chatId = null;
    history.replaceState(null, '', location.pathname);
    $('#messages').textContent = '';
    $('#chat-title').textContent = 'pocketllm';
  }
  await loadChats();
}

// Read a server-sent-event stream, calling onData with each parsed JSON event.
async function readEvents(res, onData) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of block.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') return;
        onData(JSON.parse(data));
      }
    }
  }
}

// Extra request fields (max_tokens, temperature, ...) kept as JSON in
// localStorage['pocketllm-options'], for tuning without a settings panel.
function requestOptions() {
  try { return JSON.parse(localStorage.getItem('pocketllm-options') || '{}') || {}; } catch (e) { return {}; }
}

async function send(text) {
  if (!text.trim() || state.controller) return;
  showError('');
  if (!state.chatId) await newChat();
  addMessage('user', text);
  const el = addMessage('assistant', '');
  el.classList.add('streaming');
  el.dataset.chunks = '0';
  let reply = '';
  state.controller = new AbortController();
  $('#send').disabled = true;
  $('#stop').disabled = false;
  try {
    const res = await fetch('/v1/chats/' + state.chatId + '/messages', {
      method: 'POST',
      headers: headers(true),
      body: JSON.stringify({ ...requestOptions(), content: text, stream: true }),
      signal: state.controller.signal,
    });
    if (!res.ok) {
      let msg = res.status + ' ' + res.statusText;
      try { msg = (await res.json()).error.message; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    await readEvents(res, (ev) => {
      if (ev.error) throw new Error(ev.error.message);
      const choice = ev.choices && ev.choices[0];
      if (choice && choice.delta && choice.delta.content) {
        reply += choice.delta.content;
        setMessageText(el, reply);
        el.dataset.chunks = String(Number(el.dataset.chunks) + 1);
        el.scrollIntoView({ block: 'end' });
      }
    });
    el.dataset.done = '1';
  } catch (e) {
    if (e.name !== 'AbortError') showError(e.message);
    el.dataset.done = e.name === 'AbortError' ? 'stopped' : 'error';
  } finally {
    el.classList.remove('streaming');
    state.controller = null;
    $('#send').disabled = false;
    $('#stop').disabled = true;
    await loadChats().catch(() => {});
    const li = document.querySelector('#chat-list li.active .title');
    if (li) $('#chat-title').textContent = li.textContent;
  }
}

async function loadInfo() {
  try {
    const h = await (await fetch('/health')).json();
    const mib = (b) => (b / 1048576).toFixed(1) + ' MiB';
    $('#model-info').textContent = 'model: ' + h.model + ' · ' + h.template + ' · ctx ' + h.n_ctx;
    $('#memory-info').textContent = 'memory: ' + mib(h.memory.rss_bytes) + ' used, plan ' + mib(h.memory.plan_bytes) +
      ' (model ' + mib(h.memory.model_bytes) + ') · slots ' + h.slots.busy + '/' + h.slots.total +
      (h.slots.queued ? ' · ' + h.slots.queued + ' queued' : '');
  } catch (e) {
    $('#memory-info').textContent = 'server unreachable';
  }
}

$('#composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('#input');
  const text = input.value;
  input.value = '';
  send(text);
});
$('#input').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey) {
    ev.preventDefault();
    $('#composer').requestSubmit();
  }
});
$('#stop').addEventListener('click', () => { if (state.controller) state.controller.abort(); });
$('#new-chat').addEventListener('click', () => newChat().catch((e) => showError(e.message)));

(async () => {
  loadInfo();
  setInterval(loadInfo, 5000);
  try {
    await loadChats();
    const m = location.hash.match(/^#chat-(\d+)$/);
    if (m) await openChat(Number(m[1]));
  } catch (e) {
    showError(e.message);
  }
  document.body.dataset.ready = '1';
})();

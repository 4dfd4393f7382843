// Opens a page in headless Chromium and waits for it to finish, through the DevTools protocol:
//   node --experimental-websocket test/helpers/cdp-driver.mjs URL SCREENSHOT.png TIMEOUT_S
// Polls `window.mpc` (the state the compiled program's page keeps) until its status is done
// or error, saves a screenshot, and prints the state as one JSON line (with the page's
// console messages and exceptions in `console`, and `timedOut` when it ran out of time).
// Needs Node's WebSocket (Node 20: --experimental-websocket). CHROMIUM overrides the binary.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, png, timeoutS] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'mpc-chromium-'));
const chrome = spawn(
  process.env.CHROMIUM ?? 'chromium',
  ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--remote-debugging-port=0', `--user-data-dir=${profile}`, '--window-size=900,640', '--no-first-run', 'about:blank'],
  { stdio: ['ignore', 'ignore', 'pipe'] },
);
let stderr = '';
const exited = new Promise((r) => chrome.on('exit', r));
const wsUrl = await new Promise((res, rej) => {
  const t = setTimeout(() => rej(new Error(`chromium did not start in 30 s: ${stderr.slice(-800)}`)), 30_000);
  chrome.on('error', (e) => rej(new Error(`cannot start chromium: ${e.message}`)));
  chrome.stderr.on('data', (d) => {
    stderr += d;
    const m = /DevTools listening on (ws:\S+)/.exec(stderr);
    if (m) {
      clearTimeout(t);
      res(m[1]);
    }
  });
  chrome.on('exit', (c) => rej(new Error(`chromium exited (${c}): ${stderr.slice(-800)}`)));
});

const ws = new WebSocket(wsUrl);
await new Promise((res, rej) => {
  ws.onopen = res;
  ws.onerror = () => rej(new Error(`cannot connect to ${wsUrl}`));
});
let nextId = 0;
const pending = new Map();
const consoleLines = [];
ws.onmessage = (ev) => {
  const m = JSON.parse(ev.data);
  if (m.method === 'Runtime.consoleAPICalled') consoleLines.push(`${m.params.type}: ${m.params.args.map((a) => a.value ?? a.description).join(' ')}`);
  if (m.method === 'Runtime.exceptionThrown') consoleLines.push(`exception: ${m.params.exceptionDetails.exception?.description ?? m.params.exceptionDetails.text}`);
  const p = m.id !== undefined && pending.get(m.id);
  if (!p) return;
  pending.delete(m.id);
  if (m.error) p.rej(new Error(`${p.method}: ${m.error.message}`));
  else p.res(m.result);
};
const send = (method, params = {}, sessionId) =>
  new Promise((res, rej) => {
    const id = ++nextId;
    pending.set(id, { res, rej, method });
    ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
  });

let state = null;
try {
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  await send('Runtime.enable', {}, sessionId);
  await send('Page.navigate', { url }, sessionId);
  const t0 = Date.now();
  for (;;) {
    const r = await send('Runtime.evaluate', { expression: 'JSON.stringify(globalThis.mpc ?? null)', returnByValue: true }, sessionId);
    state = JSON.parse(r.result.value ?? 'null');
    if (state && (state.status === 'done' || state.status === 'error')) break;
    if (Date.now() - t0 > Number(timeoutS) * 1000) {
      state = { ...(state ?? {}), timedOut: true };
      break;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  const shot = await send('Page.captureScreenshot', { format: 'png' }, sessionId);
  writeFileSync(png, Buffer.from(shot.data, 'base64'));
} finally {
  await send('Browser.close').catch(() => {});
  const timer = setTimeout(() => chrome.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify({ ...state, console: consoleLines }) + '\n');
process.exit(0);

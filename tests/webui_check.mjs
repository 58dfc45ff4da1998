// Loads workflows into a running ComfyUI web UI (headless Chromium + playwright-core) and reports
// unregistered node types and the "missing nodes" dialog. Usage (see README, Development):
//   node tests/webui_check.mjs http://127.0.0.1:8188 workflows/*.json
import { chromium } from 'playwright-core';
import fs from 'fs';
const url = process.argv[2];
const files = process.argv.slice(3);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--disable-quic', '--no-first-run'] });
const page = await browser.newPage({ viewport: { width: 1800, height: 1000 } });
await page.goto(url, { waitUntil: 'load' });
await page.waitForFunction(() => window.app && window.app.graph && window.LiteGraph, null, { timeout: 120000 });
await page.waitForTimeout(3000);
const version = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ || (window.app?.ui?.settings ? 'unknown' : 'unknown'));
console.log('frontend', version);
for (const f of files) {
  const wf = JSON.parse(fs.readFileSync(f, 'utf8'));
  // close any open dialog
  await page.keyboard.press('Escape');
  await page.evaluate(async (wf) => { await window.app.loadGraphData(wf); }, wf);
  await page.waitForTimeout(2500);
  const res = await page.evaluate(() => {
    const nodes = window.app.graph._nodes;
    const unregistered = nodes.filter(n => !window.LiteGraph.registered_node_types[n.type]).map(n => n.type);
    const dialogs = [...document.querySelectorAll('.p-dialog, [role=dialog]')].map(d => d.innerText.slice(0, 300));
    const missing = dialogs.filter(t => /missing|not found/i.test(t));
    const titles = nodes.map(n => n.title);
    // every link survived loading and joins types the UI accepts (e.g. LLRAG_SCHEDULE into "CONDITIONING,LLRAG_SCHEDULE")
    const g = window.app.graph;
    const links = [...(g.links instanceof Map ? g.links.values() : Object.values(g.links))].filter(Boolean);
    const invalid = links.filter(l => {
      const o = g.getNodeById(l.origin_id)?.outputs?.[l.origin_slot], i = g.getNodeById(l.target_id)?.inputs?.[l.target_slot];
      return !o || !i || !window.LiteGraph.isValidConnection(o.type, i.type);
    }).map(l => l.id);
    return { count: nodes.length, unregistered, missing, titles, links: links.length, invalid };
  });
  const name = f.split('/').pop().replace('.json', '');
  await page.screenshot({ path: `/tmp/webui_me/${name}.png` });
  console.log(JSON.stringify({ workflow: name, nodes: res.count, unregistered: res.unregistered, missing_dialog: res.missing,
                               links: `${res.links}/${wf.links.length}`, invalid_links: res.invalid }));
  // dismiss dialogs
  for (const b of await page.$$('.p-dialog-close-button, button[aria-label=Close]')) { try { await b.click(); } catch {} }
}
await browser.close();

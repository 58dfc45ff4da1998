// Opens every LongLive-RAG node's help in a running ComfyUI web UI (headless Chromium + playwright-core),
// in English and in Chinese: the properties panel's Info tab must show the pack's page (web/docs/<NodeId>.md,
// web/docs/<NodeId>/zh.md) with every image loaded, and with the locale zh the node title must be the one
// in locales/zh/nodeDefs.json. Sets the server's Comfy.Locale setting (use a throwaway --base-directory).
//   node tests/webui_docs_check.mjs http://127.0.0.1:8188   (playwright-core resolvable from here, as for webui_check.mjs)
import { chromium } from 'playwright-core';
import fs from 'fs';
import path from 'path';
import { fileURLToPath } from 'url';

const url = process.argv[2];
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const zh = JSON.parse(fs.readFileSync(path.join(root, 'locales/zh/nodeDefs.json'), 'utf8'));
const objectInfo = await (await fetch(`${url}/object_info`)).json();
const ids = Object.keys(objectInfo).filter(id => id.startsWith('LongLiveRAG_'));
const heading = (file) => fs.readFileSync(path.join(root, 'web/docs', file), 'utf8').split('\n')[0].replace(/^# /, '');
let failures = 0;

for (const locale of ['en', 'zh']) {
  await fetch(`${url}/settings/Comfy.Locale`, { method: 'POST', body: JSON.stringify(locale) });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'] });
  const page = await browser.newPage({ viewport: { width: 1800, height: 1000 } });
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => window.app && window.app.graph && window.LiteGraph, null, { timeout: 120000 });
  await page.waitForTimeout(3000);
  let panelOpen = false;
  for (const id of ids) {
    const title = await page.evaluate((id) => {
      window.app.graph.clear();
      const n = window.LiteGraph.createNode(id);
      window.app.graph.add(n); n.pos = [300, 200];
      window.app.canvas.selectNode(n); window.app.canvas.setDirty(true, true);
      return n.title;
    }, id);
    await page.waitForTimeout(800);
    if (!panelOpen) { await page.click('button[aria-label="Toggle properties panel"]'); panelOpen = true; await page.waitForTimeout(800); }
    const tab = page.getByRole('tab', { name: /^(Info|信息)$/ });
    if (await tab.count()) await tab.first().click();
    const want = heading(locale === 'zh' ? `${id}/zh.md` : `${id}.md`);
    let help = null;
    for (let i = 0; i < 20 && !(help && help.text.startsWith(want)); i++) {
      await page.waitForTimeout(300);
      help = await page.evaluate(() => {
        const el = document.querySelector('.node-help-content');
        return el && { text: el.innerText.trim(), images: [...el.querySelectorAll('img')].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]) };
      });
    }
    const problems = [];
    if (!help || !help.text.startsWith(want)) problems.push(`help shows ${JSON.stringify(help?.text.slice(0, 60))}, not the page '${want}'`);
    for (const [src, ok] of help?.images || []) if (!ok) problems.push(`image ${src} did not load`);
    if (locale === 'zh' && title !== zh[id].display_name) problems.push(`title '${title}', not '${zh[id].display_name}'`);
    failures += problems.length > 0;
    console.log(`${problems.length ? 'FAIL' : 'ok  '} ${locale} ${id}: '${title}', help '${want}', ${help?.images.length || 0} image(s)`
                + (problems.length ? ' — ' + problems.join('; ') : ''));
  }
  await browser.close();
}
process.exit(failures ? 1 : 0);

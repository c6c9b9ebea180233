// Over HTTPS the browser speaks HTTP/2 to the server, so the streams of one origin no longer
// wait for one of HTTP/1.1's six connections: ten consoles (each keeps a stream of its own,
// never the tabs' shared one) in one browser all stay live. Over HTTP/1.1 the seventh would hang.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Page } from '@playwright/test';
import { test, expect, token, watchConsole, selfSigned, TidingsServer } from './server';

const protocol = (page: Page) =>
  page.evaluate(() => (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).nextHopProtocol);

test('ten consoles of one origin over HTTPS share HTTP/2 and all stay live', async ({ browser }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-e2e-tls-'));
  const { cert, key } = selfSigned(dir);
  const server = await TidingsServer.start([
    '--market-interval-ms', '0',
    '--monitor-interval-ms', '0',
    '--tls-cert', cert,
    '--tls-key', key,
  ]);
  try {
    expect(server.url).toMatch(/^https:\/\//);
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const pages: Page[] = [];
    const errors: string[][] = [];
    for (let i = 0; i < 10; i++) {
      const page = await context.newPage();
      errors.push(watchConsole(page));
      await page.goto(`${server.url}/console`);
      await expect(page.locator('main')).toHaveAttribute('data-hydrated', 'true');
      await page.fill('#sub-selectors', 'https://example.com/h2/{id}');
      await page.click('#console-subscribe button');
      await expect(page.locator('.live-badge')).toHaveText('open');
      expect(await protocol(page)).toBe('h2');
      pages.push(page);
    }
    // Ten streams of their own, all open at once.
    const metrics = await (await context.request.get(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/^tidings_subscribers 10$/m);

    // Every console gets each update, the first page's as well as the tenth's.
    const publish = async (id: string, data: string) => {
      const response = await context.request.post(`${server.url}/.well-known/mercure`, {
        headers: { Authorization: `Bearer ${token({ mercure: { publish: ['*'] } })}` },
        form: { topic: `https://example.com/h2/${id}`, id, data },
      });
      expect(response.status()).toBe(200);
    };
    for (const [id, data] of [['one', 'to every console'], ['two', 'and again']]) {
      await publish(id, data);
      for (const page of pages) {
        await expect(page.locator('#console-events .event').first().locator('.data')).toHaveText(data);
      }
    }
    for (const page of pages) await expect(page.locator('.live-badge')).toHaveText('open');
    expect(errors.flat()).toEqual([]);
    await context.close();
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

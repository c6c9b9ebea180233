// A conformance check of the hub's two protocol versions, through a real EventSource in Chromium:
// the same publish/subscribe cases (exact, pattern, private, unknown id) in draft-07 (`topic=`)
// and in Mercure 1.0 (`match…=`), on the same endpoint of one server.

import { APIRequestContext, Page } from '@playwright/test';
import { test, expect, token, TidingsServer } from './server';

type Received = { type: string; id: string; data: string };

/** Opens an EventSource in the page on `query`, recording every event (named ones too). */
async function listen(page: Page, name: string, query: string, named: string[] = []) {
  await page.evaluate(
    ({ name, query, named }) => {
      const w = window as unknown as Record<string, unknown>;
      const seen: { type: string; id: string; data: string }[] = [];
      w[`seen_${name}`] = seen;
      const source = new EventSource(`/.well-known/mercure?${query}`);
      const record = (e: MessageEvent) => seen.push({ type: e.type, id: e.lastEventId, data: e.data });
      source.onmessage = record;
      for (const type of named) source.addEventListener(type, record as EventListener);
      w[`open_${name}`] = new Promise((resolve) => (source.onopen = resolve));
    },
    { name, query, named },
  );
  await page.evaluate((name) => (window as unknown as Record<string, Promise<unknown>>)[`open_${name}`], name);
}

const seen = (page: Page, name: string) =>
  page.evaluate((name) => (window as unknown as Record<string, Received[]>)[`seen_${name}`], name);

async function publish(request: APIRequestContext, server: TidingsServer, form: Record<string, string>) {
  const response = await request.post(`${server.url}/.well-known/mercure`, {
    headers: { Authorization: `Bearer ${token({ mercure: { publish: ['*'] } })}` },
    form,
  });
  expect(response.status()).toBe(200);
  return response.text();
}

const q = (pairs: [string, string][]) => new URLSearchParams(pairs).toString();

for (const version of ['draft-07', '1.0'] as const) {
  test(`a real EventSource, ${version}: exact, pattern, private and an unknown id`, async ({ page, request }) => {
    const server = await TidingsServer.start(['--market-interval-ms', '0', '--monitor-interval-ms', '0']);
    try {
      await page.goto(`${server.url}/`);
      const v1 = version === '1.0';
      const exact = (t: string): [string, string] => (v1 ? ['match', t] : ['topic', t]);
      const pattern: [string, string] = v1
        ? ['match_urlpattern', 'https://example.com/books/:id']
        : ['topic', 'https://example.com/books/{id}'];
      const privateToken = token({ mercure: { subscribe: ['https://example.com/secret'] } });
      const resume: [string, string] = v1 ? ['last_event_id', 'urn:uuid:unknown'] : ['lastEventID', 'urn:uuid:unknown'];

      await listen(page, 'exact', q([exact('https://example.com/foo')]));
      await listen(page, 'pattern', q([pattern]));
      // EventSource cannot send headers: the draft-07 `authorization` query parameter (the
      // 1.0 cookie needs HTTPS, tested with the 1.0 tokens).
      await listen(page, 'private', q([exact('https://example.com/secret'), ['authorization', privateToken]]));
      await listen(page, 'anonymous', q([exact('https://example.com/secret')]));
      await listen(page, 'unknown', q([exact('https://example.com/foo'), resume]), ['tidings-history-gap']);

      const foo = await publish(request, server, { topic: 'https://example.com/foo', data: 'foo' });
      const book = await publish(request, server, { topic: 'https://example.com/books/42', data: 'book' });
      await publish(request, server, { topic: 'https://example.com/books/42/pages', data: 'not a book' });
      const secret = await publish(request, server, { topic: 'https://example.com/secret', data: 'secret', private: 'on' });
      await publish(request, server, { topic: 'https://example.com/bar', data: 'bar' });

      await expect.poll(() => seen(page, 'exact')).toEqual([{ type: 'message', id: foo, data: 'foo' }]);
      await expect.poll(() => seen(page, 'pattern')).toEqual([{ type: 'message', id: book, data: 'book' }]);
      await expect.poll(() => seen(page, 'private')).toEqual([{ type: 'message', id: secret, data: 'secret' }]);
      // An unknown id: the gap event first (the hub cannot send what was missed), then live.
      await expect
        .poll(async () => (await seen(page, 'unknown')).map((e) => `${e.type}:${e.data}`))
        .toEqual([expect.stringMatching(/^tidings-history-gap:/), 'message:foo']);
      expect(await seen(page, 'anonymous')).toEqual([]);
    } finally {
      await server.stop();
    }
  });
}

// A conformance check of the hub's two protocol versions, through a real EventSource in Chromium:
// the same publish/subscribe cases (exact, pattern, private, unknown id) in draft-07 (`topic=`)
// and in Mercure 1.0 (`match…=`), on the same endpoint of one server. Mercure 1.0's private case
// needs the access-token cookie, so HTTPS: a test of its own.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { APIRequestContext, Page } from '@playwright/test';
import { test, expect, token, selfSigned, JWT_KEY, TidingsServer } from './server';

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
      for (const type of named) source.addEventListener(type, (e) => record(e as MessageEvent));
      w[`open_${name}`] = new Promise((resolve) => (source.onopen = resolve));
    },
    { name, query, named },
  );
  await page.evaluate((name) => (window as unknown as Record<string, Promise<unknown>>)[`open_${name}`], name);
}

/** Whether an EventSource on `query` is refused: it fails without opening and does not retry. */
function refused(page: Page, query: string): Promise<boolean> {
  return page.evaluate(
    (query) =>
      new Promise<boolean>((resolve) => {
        const source = new EventSource(`/.well-known/mercure?${query}`);
        source.onopen = () => {
          source.close();
          resolve(false);
        };
        source.onerror = () => resolve(source.readyState === EventSource.CLOSED);
      }),
    query,
  );
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
      // EventSource cannot send headers: draft-07's `authorization` query parameter. Mercure 1.0
      // takes no token from the URL (400, so the EventSource fails for good); its private case,
      // through the access-token cookie, needs HTTPS and is the test below.
      const privateQuery = q([exact('https://example.com/secret'), ['authorization', privateToken]]);
      if (v1) expect(await refused(page, privateQuery)).toBe(true);
      else await listen(page, 'private', privateQuery);
      await listen(page, 'anonymous', q([exact('https://example.com/secret')]));
      await listen(page, 'unknown', q([exact('https://example.com/foo'), resume]), ['tidings-history-gap']);

      const foo = await publish(request, server, { topic: 'https://example.com/foo', data: 'foo' });
      const book = await publish(request, server, { topic: 'https://example.com/books/42', data: 'book' });
      await publish(request, server, { topic: 'https://example.com/books/42/pages', data: 'not a book' });
      const secret = await publish(request, server, { topic: 'https://example.com/secret', data: 'secret', private: 'on' });
      await publish(request, server, { topic: 'https://example.com/bar', data: 'bar' });

      await expect.poll(() => seen(page, 'exact')).toEqual([{ type: 'message', id: foo, data: 'foo' }]);
      await expect.poll(() => seen(page, 'pattern')).toEqual([{ type: 'message', id: book, data: 'book' }]);
      if (!v1) await expect.poll(() => seen(page, 'private')).toEqual([{ type: 'message', id: secret, data: 'secret' }]);
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

/** An HS256 RFC 9068 access token (Mercure 1.0) signed with the test servers' key. */
function accessToken(claims: object): string {
  const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${b64({ alg: 'HS256', typ: 'at+jwt' })}.${b64(claims)}`;
  return `${unsigned}.${crypto.createHmac('sha256', JWT_KEY).update(unsigned).digest('base64url')}`;
}

test('a real EventSource, 1.0 over HTTPS: private updates through the access-token cookie', async ({ browser }) => {
  // EventSource cannot send headers, and Mercure 1.0 never takes an access token from the URL:
  // a browser presents it in the `__Secure-mercure_access_token` cookie, which needs HTTPS.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-e2e-conformance-'));
  const { cert, key } = selfSigned(dir);
  const server = await TidingsServer.start([
    '--market-interval-ms', '0', '--monitor-interval-ms', '0', '--tls-cert', cert, '--tls-key', key,
  ]);
  try {
    const granted = await browser.newContext({ ignoreHTTPSErrors: true });
    await granted.addCookies([{
      name: '__Secure-mercure_access_token',
      value: accessToken({
        iss: server.url,
        aud: `${server.url}/.well-known/mercure`,
        exp: Math.floor(Date.now() / 1000) + 3600,
        authorization_details: [{
          type: 'https://mercure.rocks/authorization-detail',
          actions: ['subscribe'],
          topics: [{ match: 'https://example.com/secret' }],
        }],
      }),
      url: server.url,
      secure: true,
    }]);
    const anonymous = await browser.newContext({ ignoreHTTPSErrors: true });
    const member = await granted.newPage();
    const stranger = await anonymous.newPage();
    for (const page of [member, stranger]) {
      await page.goto(`${server.url}/`);
      await listen(page, 'secret', q([['match', 'https://example.com/secret']]));
    }
    const response = await anonymous.request.post(`${server.url}/.well-known/mercure`, {
      headers: { Authorization: `Bearer ${token({ mercure: { publish: ['*'] } })}` },
      form: { topic: 'https://example.com/secret', data: 'secret', private: 'on' },
    });
    expect(response.status()).toBe(200);
    const id = await response.text();
    await expect.poll(() => seen(member, 'secret')).toEqual([{ type: 'message', id, data: 'secret' }]);
    expect(await seen(stranger, 'secret')).toEqual([]);
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// The Mercure hub seen from a real browser's EventSource.

import { test, expect, token, watchConsole } from './server';

test('an EventSource receives a published update with its id and exact data', async ({
  page,
  server,
  request,
}) => {
  const errors = watchConsole(page);
  await page.goto(server.url);
  const topic = 'https://example.com/books/1';

  // Subscribe in the page, with a URI-template selector, and report the first message.
  await page.evaluate((selector) => {
    const url = new URL('/.well-known/mercure', location.href);
    url.searchParams.append('topic', selector);
    const source = new EventSource(url);
    (window as any).received = new Promise((resolve) => {
      source.onmessage = (event) => {
        resolve({ data: event.data, lastEventId: event.lastEventId, type: event.type });
        source.close();
      };
    });
    (window as any).opened = new Promise((resolve) => (source.onopen = resolve));
  }, 'https://example.com/books/{id}');
  await page.evaluate(() => (window as any).opened);

  const data = 'first line\n\n  indented after a blank line\r\nlast: with colon\n';
  const response = await request.post(`${server.url}/.well-known/mercure`, {
    headers: { Authorization: `Bearer ${token({ mercure: { publish: [topic] } })}` },
    form: { topic, data, id: 'book-1-v2' },
  });
  expect(response.status()).toBe(200);
  expect(await response.text()).toBe('book-1-v2');

  const received = await page.evaluate(() => (window as any).received);
  // CRLF arrives as LF: SSE has one kind of line break once parsed.
  expect(received).toEqual({
    data: 'first line\n\n  indented after a blank line\nlast: with colon\n',
    lastEventId: 'book-1-v2',
    type: 'message',
  });
  expect(errors).toEqual([]);
});

test('pages advertise the hub with a Link header', async ({ server, request }) => {
  const response = await request.get(server.url);
  expect(response.headers()['link']).toBe('</.well-known/mercure>; rel="mercure"');
});

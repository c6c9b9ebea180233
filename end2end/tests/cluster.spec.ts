// Three nodes on one Redis, in the browser: a chat message sent on one node appears once on
// another, presence counts both, and a window that moves to a third node picks up where it was.

import { expect, joinRoom, log, RedisServer, send, test, TidingsServer, watchConsole } from './server';

test('a chat across three nodes: sent on A, shown once on B, resumed on C without a gap', async ({ browser }) => {
  const redis = await RedisServer.start();
  const nodes: TidingsServer[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      nodes.push(
        await TidingsServer.start([
          '--redis-url', redis.url,
          '--market-interval-ms', '0',
          '--monitor-interval-ms', '0',
        ]),
      );
    }
    const [nodeA, nodeB, nodeC] = nodes;
    const room = '/chat/e2e-cluster';
    const a = await joinRoom(await browser.newContext(), `${nodeA.url}${room}`, 'ann');
    const bContext = await browser.newContext();
    const b = await joinRoom(bContext, `${nodeB.url}${room}`, 'bob');
    const errors = [watchConsole(a), watchConsole(b)];
    // Presence counts the room on every node.
    for (const p of [a, b]) await expect(p.locator('#presence')).toHaveText('2');

    await send(a, 'hello from A');
    await expect(log(b)).toHaveText(['annhello from A']);
    await send(b, 'reply from B');
    const expected = ['annhello from A', 'bobreply from B'];
    for (const p of [a, b]) await expect(log(p)).toHaveText(expected);

    // Bob reloads on node C while Ann writes on: the page shows the room as it stands, then
    // goes live from there — nothing missed, nothing twice, and no gap (which would reload).
    const moving = send(a, 'while bob moves');
    await b.goto(`${nodeC.url}${room}`);
    await moving;
    expected.push('annwhile bob moves');
    await expect(b.locator('.live-badge')).toHaveText('open');
    await b.evaluate(() => ((window as any).sameDocument = true));
    await b.fill('#chat-name', 'bob');
    await send(a, 'after the move');
    expected.push('annafter the move');
    await send(b, 'bob on C');
    expected.push('bobbob on C');
    for (const p of [a, b]) await expect(log(p)).toHaveText(expected);
    expect(await b.evaluate(() => (window as any).sameDocument)).toBe(true);
    await expect(a.locator('#presence')).toHaveText('2');
    expect(errors.flat()).toEqual([]);
  } finally {
    for (const node of nodes) await node.stop();
    await redis.stop();
  }
});

// Starts the real `tidings` binary for a test and stops it afterwards.
//
// The binary and the built site come from the Makefile (TIDINGS_BIN, TIDINGS_SITE_ROOT); each
// server listens on its own free port, which it reports in its log.

import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { test as base, expect, BrowserContext, Page, ConsoleMessage } from '@playwright/test';

const root = path.resolve(__dirname, '..', '..');
const bin = process.env.TIDINGS_BIN ?? path.join(root, 'target', 'release', 'tidings');
/** The data folders the harness makes, under the temp dir. */
const DATA_PREFIX = 'tidings-e2e-';
const siteRoot = process.env.TIDINGS_SITE_ROOT ?? path.join(root, 'target', 'site');

/** The HS256 key test servers verify publisher and subscriber tokens with. */
export const JWT_KEY = 'e2e-secret-key-for-tests-only-0123456789';

export class TidingsServer {
  private constructor(
    private child: ChildProcess,
    readonly url: string,
    readonly port: number,
    readonly args: string[],
    readonly dataDir: string,
  ) {}

  /**
   * Starts a server; `port` 0 picks a free one. Each server gets a fresh data folder unless
   * `dataDir` names one (to restart a server on the same history).
   */
  static async start(args: string[] = [], port = 0, dataDir?: string): Promise<TidingsServer> {
    const data = dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), DATA_PREFIX));
    const child = spawn(bin, ['--addr', `127.0.0.1:${port}`, '--data-dir', data, ...args], {
      env: {
        ...process.env,
        TIDINGS_SITE_ROOT: siteRoot,
        TIDINGS_PUBLISHER_JWT_KEY: JWT_KEY,
        TIDINGS_SUBSCRIBER_JWT_KEY: JWT_KEY,
        NO_COLOR: '1',
        RUST_LOG: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const url = await new Promise<string>((resolve, reject) => {
      let log = '';
      const timer = setTimeout(() => reject(new Error(`tidings did not start:\n${log}`)), 30_000);
      const onData = (chunk: Buffer) => {
        log += chunk.toString();
        const match = log.match(/listening on (https?:\/\/[0-9.]+:\d+)/);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`tidings exited with ${code}:\n${log}`));
      });
    });
    return new TidingsServer(child, url, Number(new URL(url).port), args, data);
  }

  /** Kills the process at once (like a crash) and waits until it is gone. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** Asks the process to shut down (SIGTERM), waits until it has exited, and removes its data
   * folder if the harness made it (a killed server's stays, for a restart on its history). */
  async stop(): Promise<void> {
    await this.signal('SIGTERM');
    if (path.dirname(this.dataDir) === os.tmpdir() && path.basename(this.dataDir).startsWith(DATA_PREFIX)) {
      fs.rmSync(this.dataDir, { recursive: true, force: true });
    }
  }

  private signal(sig: NodeJS.Signals): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.kill(sig);
    });
  }
}

/** A `redis-server` of the test's own on a free port, in a temporary folder (Debian's package,
 * installed by `scripts/setup.sh --test`); `stop` kills it by pid and removes the folder. */
export class RedisServer {
  private constructor(
    private child: ChildProcess,
    readonly url: string,
    private dir: string,
  ) {}

  static async start(): Promise<RedisServer> {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-e2e-redis-'));
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes'],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 10_000;
    while (!(await answersPing(port))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`redis-server on port ${port} did not start`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return new RedisServer(child, `redis://127.0.0.1:${port}/`, dir);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      await new Promise<void>((resolve) => {
        this.child.once('exit', () => resolve());
        this.child.kill('SIGKILL');
      });
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A port free now (the OS picks it; it is very likely still free a moment later). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Whether a Redis on this port answers PING. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(500);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** An HS256 JWT with these claims, signed with the test servers' key. */
export function token(claims: object, key = JWT_KEY): string {
  const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  const signature = crypto.createHmac('sha256', key).update(unsigned).digest('base64url');
  return `${unsigned}.${signature}`;
}

/** Records console errors and uncaught exceptions, so a test can assert there were none. */
export function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (message: ConsoleMessage) => {
    if (message.type() === 'error' || message.type() === 'warning') {
      errors.push(`${message.type()}: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  return errors;
}

/** Fast streams and publishers, so tests see things move. */
export const FAST = [
  '--stream-interval-ms', '20',
  '--market-interval-ms', '200',
  '--monitor-interval-ms', '250',
];

/** Saves a screenshot for the README under docs/ when TIDINGS_SCREENSHOTS=1 (`make screenshots`). */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (process.env.TIDINGS_SCREENSHOTS === '1') {
    await page.screenshot({ path: path.join(root, 'docs', `${name}.png`) });
  }
}

/** A test whose `server` fixture is a fresh tidings with a fast counter stream. */
export const test = base.extend<{ server: TidingsServer }>({
  server: async ({}, use) => {
    const server = await TidingsServer.start(FAST);
    await use(server);
    await server.stop();
  },
});


// ---- Chat, as a visitor uses it ----

/** Opens a chat room in a new page of `context`, waits until it is live, and types the name. */
export async function joinRoom(context: BrowserContext, url: string, name: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(url);
  await expect(page.locator('.live-badge')).toHaveText('open');
  await page.fill('#chat-name', name);
  return page;
}

/** Sends a message and waits until the form is cleared (the server took it). */
export async function send(page: Page, text: string): Promise<void> {
  await page.fill('#chat-text', text);
  await page.click('.chat-form button');
  await expect(page.locator('#chat-text')).toHaveValue('');
}

/** The messages a chat page shows. */
export const log = (page: Page) => page.locator('#chat-log .message');

export { expect };

/** A self-signed certificate for 127.0.0.1 and its key, made now with `openssl`. */
export function selfSigned(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  return { cert, key };
}

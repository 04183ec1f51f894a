/**
 * ProcessTerminalAddon on xterm's headless terminal and the real server:
 * keystrokes out as process/write notifications, output into the terminal,
 * the size as process/resize, and input after the end handed to the panel.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Terminal } from '@xterm/headless';

import { IProcessAddonHost, ProcessTerminalAddon } from '../src/addon';
import { ExecConnection } from '../src/connection';
import { openConnection, sentNotifications, waitFor } from './stdiokernel';

class Host implements IProcessAddonHost {
  writes = 0;
  exit: [number | null, string | null] | null = null;
  isClosed = false;
  typedAfterEnd: string[] = [];

  beforeWrite(): void {
    this.writes++;
  }

  exited(exitCode: number | null, signal: string | null): void {
    this.exit = [exitCode, signal];
  }

  closed(): void {
    this.isClosed = true;
  }

  endedInput(bytes: Uint8Array): void {
    this.typedAfterEnd.push(Buffer.from(bytes).toString());
  }
}

/** The terminal's lines, right-trimmed, without the empty ones. */
function screen(term: Terminal): string[] {
  const buffer = term.buffer.active;
  const out: string[] = [];
  for (let i = 0; i < buffer.length; i++) {
    const line = buffer.getLine(i)?.translateToString(true) ?? '';
    if (line) {
      out.push(line);
    }
  }
  return out;
}

type Setup = Awaited<ReturnType<typeof openConnection>> & { term: Terminal; host: Host; addon: ProcessTerminalAddon };

async function setup(): Promise<Setup> {
  const opened = await openConnection();
  const term = new Terminal({ cols: 80, rows: 24, allowProposedApi: true });
  const host = new Host();
  const addon = new ProcessTerminalAddon(host);
  term.loadAddon(addon);
  return { ...opened, term, host, addon };
}

/** Start `argv` in a PTY the terminal's size, bound to the addon as the panel does. */
async function startTty(
  conn: ExecConnection,
  term: Terminal,
  addon: ProcessTerminalAddon,
  argv: string[]
): Promise<void> {
  addon.bind(conn, 'p', 0);
  const size = { rows: term.rows, cols: term.cols };
  await conn.request('process/start', { processId: 'p', argv, tty: true, size });
  addon.live(size);
}

test('each keystroke is one process/write notification; the echo is written to the terminal', async () => {
  const { kernel, comm, conn, term, host, addon } = await setup();
  try {
    await startTty(conn, term, addon, ['cat']);
    for (const key of 'hi!') {
      term.input(key);
    }
    term.input('\r');
    await waitFor(() => screen(term).filter(l => l === 'hi!').length === 2, 'the echo and cat\'s copy');
    const writes = sentNotifications(comm, 'process/write');
    assert.equal(writes.length, 4);
    assert.deepEqual(
      writes.map(w => Buffer.from(w.chunk as string, 'base64').toString()),
      ['h', 'i', '!', '\r']
    );
    assert.ok(host.writes > 0, 'beforeWrite ran');
    assert.equal(comm.sent.filter(m => m.method === 'process/write' && m.id !== undefined).length, 0);
    // Output the terminal parsed is acknowledged.
    await waitFor(() => sentNotifications(comm, 'process/ack').length > 0, 'an ack');
  } finally {
    term.dispose();
    await kernel.shutdown();
  }
});

test('input typed before the process runs waits, then goes out in one write', async () => {
  const { kernel, comm, conn, term, addon } = await setup();
  try {
    addon.bind(conn, 'p', 0);
    term.input('echo ');
    term.input('early\r');
    assert.equal(sentNotifications(comm, 'process/write').length, 0);
    const size = { rows: term.rows, cols: term.cols };
    await conn.request('process/start', { processId: 'p', argv: ['cat'], tty: true, size });
    addon.live(size);
    const writes = sentNotifications(comm, 'process/write');
    assert.equal(writes.length, 1);
    assert.equal(Buffer.from(writes[0].chunk as string, 'base64').toString(), 'echo early\r');
  } finally {
    term.dispose();
    await kernel.shutdown();
  }
});

test('a resize reaches the PTY before the keys typed after it', async () => {
  const { kernel, comm, conn, term, addon } = await setup();
  try {
    await startTty(conn, term, addon, ['sh']);
    term.resize(101, 33);
    term.input('stty size\r');
    const methods = comm.sent.map(m => m.method);
    const resize = methods.lastIndexOf('process/resize');
    assert.ok(resize >= 0 && resize < methods.lastIndexOf('process/write'), methods.join(' '));
    await waitFor(() => screen(term).includes('33 101'), 'stty size to print 33 101');
    // Unchanged sizes are not sent again.
    const count = methods.filter(m => m === 'process/resize').length;
    term.resize(101, 33);
    term.input('\r');
    assert.equal(comm.sent.filter(m => m.method === 'process/resize').length, count);
  } finally {
    term.dispose();
    await kernel.shutdown();
  }
});

test('after the process ends, input goes to the host and nothing is written', async () => {
  const { kernel, comm, conn, term, host, addon } = await setup();
  try {
    await startTty(conn, term, addon, ['sh', '-c', 'exit 7']);
    await waitFor(() => host.isClosed, 'the close');
    assert.deepEqual(host.exit, [7, null]);
    assert.equal(addon.isEnded, true);
    term.input('x\r');
    assert.deepEqual(host.typedAfterEnd, ['x\r']);
    assert.equal(sentNotifications(comm, 'process/write').length, 0);
    // A new process: input waits again until it runs.
    addon.unbind();
    term.input('y');
    assert.equal(host.typedAfterEnd.length, 1);
  } finally {
    term.dispose();
    await kernel.shutdown();
  }
});

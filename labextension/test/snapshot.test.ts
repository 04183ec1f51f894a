/**
 * A terminal that starts from the kernel's `process/snapshot` (a reload, a
 * second viewer, an attached session) against the real stdio server: its
 * cells equal those of a terminal fed the whole output from the start, the
 * output after the snapshot's seq appears once, keystrokes reach the
 * program; a process without a snapshot (a pipe) replays its output.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Terminal } from '@xterm/headless';

import { IProcessAddonHost, ProcessTerminalAddon } from '../src/addon';
import { ExecConnection } from '../src/connection';
import { ISize } from '../src/protocol';
import { openConnection, waitFor } from './stdiokernel';

class Host implements IProcessAddonHost {
  exit: [number | null, string | null] | null = null;
  isClosed = false;
  exited(exitCode: number | null, signal: string | null): void {
    this.exit = [exitCode, signal];
  }
  closed(): void {
    this.isClosed = true;
  }
  endedInput(): void {}
}

/** The attributes of a cell without any SGR (as `cells` writes them). */
const DEFAULT_ATTRS = '0,-1,0,-1,0,0,0,0,0';

/** Every cell of the active buffer (char + attributes), the cursor and which buffer is active. */
export function cells(term: Terminal): string {
  const buffer = term.buffer.active;
  const rows: string[] = [`${buffer.type} cursor ${buffer.cursorX},${buffer.cursorY} base ${buffer.baseY}`];
  const cell = buffer.getNullCell();
  for (let y = 0; y < buffer.length; y++) {
    const line = buffer.getLine(y)!;
    let row = '';
    for (let x = 0; x < term.cols; x++) {
      line.getCell(x, cell);
      const attrs = [cell.getFgColorMode(), cell.getFgColor(), cell.getBgColorMode(), cell.getBgColor(),
        cell.isBold(), cell.isItalic(), cell.isUnderline(), cell.isInverse(), cell.isDim()].join(',');
      row += `${cell.getChars() || ' '}${attrs === DEFAULT_ATTRS ? '' : `{${attrs}}`}`;
    }
    rows.push(row.trimEnd());
  }
  return rows.join('\n');
}

function written(term: Terminal): Promise<void> {
  return new Promise(resolve => term.write('', resolve));
}

/** A terminal with the addon, as the panel makes one. */
function viewer(rows = 24, cols = 80): { term: Terminal; addon: ProcessTerminalAddon; host: Host } {
  const term = new Terminal({ cols, rows, allowProposedApi: true });
  const host = new Host();
  const addon = new ProcessTerminalAddon(host);
  term.loadAddon(addon);
  return { term, addon, host };
}

async function attachViewer(
  conn: ExecConnection,
  processId: string,
  rows = 24,
  cols = 80
): Promise<ReturnType<typeof viewer>> {
  const v = viewer(rows, cols);
  await v.addon.subscribeFromScreen(conn, processId);
  v.addon.live();
  return v;
}

/** Draws in the alternate screen with colours and a cursor move, then echoes what is typed. */
const FULL_SCREEN =
  "printf '\\033[?1049h\\033[2J\\033[H\\033[1;31mred\\033[0m \\033[44mblue\\033[0m\\033[5;10Hat 5,10\\n'; " +
  "for i in $(seq 1 40); do printf 'line %d\\r\\n' $i; done; printf 'ready> '; exec cat";

test('a second viewer starts from the snapshot: same cells, then live output once, in order', async () => {
  const { kernel, comm, conn } = await openConnection();
  const first = viewer();
  try {
    first.addon.bind(conn, 'p', 0);
    const size = { rows: 24, cols: 80 };
    await conn.request('process/start', { processId: 'p', argv: ['sh', '-c', FULL_SCREEN], tty: true, size });
    first.addon.live(size);
    await waitFor(() => cells(first.term).includes('ready>'), 'the program to draw');
    await written(first.term);

    const second = await attachViewer(conn, 'p');
    try {
      await written(second.term);
      const asked = comm.sent.find(m => m.method === 'process/snapshot')!;
      const answer = comm.received.find(m => m.id === asked.id)!;
      assert.ok(answer.result, `the snapshot answered ${JSON.stringify(answer.error)}`);
      assert.equal(second.term.buffer.active.type, 'alternate');
      assert.equal(cells(second.term), cells(first.term));
      // Typed in the second viewer: reaches the program; its echo shows once in both.
      second.term.input('typed-once\r');
      await waitFor(
        () => cells(second.term).includes('typed-once') && cells(first.term).includes('typed-once'),
        'the echo in both viewers'
      );
      await written(second.term);
      await written(first.term);
      assert.equal(cells(second.term).split('typed-once').length, cells(first.term).split('typed-once').length);
      assert.equal(cells(second.term), cells(first.term));
    } finally {
      second.term.dispose();
    }
  } finally {
    first.term.dispose();
    await kernel.shutdown();
  }
});

test('a process without a snapshot (not a tty) is replayed from the start', async () => {
  const { kernel, comm, conn } = await openConnection();
  try {
    await conn.request('process/start', {
      processId: 'pipe',
      argv: ['sh', '-c', 'echo pipe-one; echo pipe-two; exec sleep 30'],
      tty: false
    });
    const probe = viewer();
    const { stream } = await probe.addon.bindFromScreen(conn, 'pipe');
    assert.equal(stream.lastSeq, 0);
    await stream.subscribe();
    probe.addon.live();
    await waitFor(() => cells(probe.term).includes('pipe-two'), 'the replay');
    assert.ok(comm.sent.some(m => m.method === 'process/snapshot'));
    probe.term.dispose();
  } finally {
    await kernel.shutdown();
  }
});

test('a viewer of another size gets the screen at its size, then the program redraws for it', async () => {
  const { kernel, comm, conn } = await openConnection();
  try {
    const size = { rows: 24, cols: 80 };
    // Redraws its frame (its size in the last row) on every SIGWINCH.
    const script =
      "draw() { printf '\\033[?1049h\\033[2J\\033[Htop row'; set -- $(stty size); " +
      "printf '\\033[%d;1Hsize %s' $1 \"$1x$2\"; }; trap draw WINCH; draw; " +
      'while :; do sleep 0.05; done';
    await conn.request('process/start', { processId: 'w', argv: ['bash', '-c', script], tty: true, size });
    const reads = async () => (await conn.request<{ chunks: unknown[] }>('process/read', { processId: 'w' })).chunks;
    for (let i = 0; (await reads()).length === 0 && i < 500; i++) {
      await new Promise(resolve => setTimeout(resolve, 10));
    }
    const wide = await attachViewer(conn, 'w', 30, 100);
    try {
      const asked = comm.sent.find(m => m.method === 'process/snapshot')!;
      assert.deepEqual([(asked.params as ISize).rows, (asked.params as ISize).cols], [30, 100]);
      const methods = comm.sent.map(m => m.method);
      assert.ok(methods.lastIndexOf('process/resize') > methods.indexOf('process/subscribe'), methods.join(' '));
      await waitFor(() => cells(wide.term).includes('size 30x100'), 'the redraw at the viewer\'s size');
      const lines = cells(wide.term).split('\n');
      assert.equal(wide.term.buffer.active.type, 'alternate');
      assert.ok(lines[lines.length - 1].startsWith('size 30x100'), lines.join('\n'));
    } finally {
      wide.term.dispose();
    }
  } finally {
    await kernel.shutdown();
  }
});

test('a viewer of a process that has ended gets its last screen and the end', async () => {
  const { kernel, conn } = await openConnection();
  try {
    await conn.request('process/start', {
      processId: 'done',
      argv: ['sh', '-c', "printf 'last words\\r\\n'; exit 3"],
      tty: true,
      size: { rows: 24, cols: 80 }
    });
    for (let i = 0; i < 500; i++) {
      const list = await conn.request<{ processes: { processId: string; closed: boolean }[] }>('process/list');
      if (list.processes.some(p => p.processId === 'done' && p.closed)) {
        break;
      }
      await new Promise(resolve => setTimeout(resolve, 10));
    }
    const late = await attachViewer(conn, 'done');
    try {
      await waitFor(() => late.host.isClosed, 'the close');
      assert.deepEqual(late.host.exit, [3, null]);
      await written(late.term);
      assert.ok(cells(late.term).includes('last words'));
    } finally {
      late.term.dispose();
    }
  } finally {
    await kernel.shutdown();
  }
});

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
import { openConnection, waitFor } from './stdiokernel';

class Host implements IProcessAddonHost {
  exited(): void {}
  closed(): void {}
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
function viewer(): { term: Terminal; addon: ProcessTerminalAddon } {
  const term = new Terminal({ cols: 80, rows: 24, allowProposedApi: true });
  const addon = new ProcessTerminalAddon(new Host());
  term.loadAddon(addon);
  return { term, addon };
}

async function attachViewer(conn: ExecConnection, processId: string): Promise<ReturnType<typeof viewer>> {
  const v = viewer();
  const { stream } = await v.addon.bindFromScreen(conn, processId);
  await stream.subscribe();
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

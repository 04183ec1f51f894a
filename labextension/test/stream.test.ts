/**
 * ProcessStream against the real server: every seq applied once, in order,
 * holes filled with process/read, output acknowledged only once consumed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ExecConnection } from '../src/connection';
import { IStreamSink, ProcessStream } from '../src/stream';
import { openConnection, sentNotifications, waitFor } from './stdiokernel';

/** A sink that keeps what it is given; `hold` keeps the `done` callbacks back. */
class Sink implements IStreamSink {
  constructor(private _hold = false) {}

  chunks: Uint8Array[] = [];
  held: (() => void)[] = [];
  exit: [number | null, string | null] | null = null;
  isClosed = false;
  notices: string[] = [];

  get bytes(): number {
    return this.chunks.reduce((n, c) => n + c.byteLength, 0);
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  write(data: Uint8Array, done: () => void): void {
    this.chunks.push(data.slice());
    if (this._hold) {
      this.held.push(done);
    } else {
      done();
    }
  }

  exited(exitCode: number | null, signal: string | null): void {
    this.exit = [exitCode, signal];
  }

  closed(): void {
    this.isClosed = true;
  }

  notice(text: string): void {
    this.notices.push(text);
  }
}

const lines = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}${i + 1}\n`).join('');

async function start(conn: ExecConnection, processId: string, script: string): Promise<void> {
  await conn.request('process/start', { processId, argv: ['sh', '-c', script] });
}

test('output arrives once and in order, then the exit, then the close; consumed output is acked', async () => {
  const { kernel, comm, conn } = await openConnection();
  try {
    const sink = new Sink();
    const stream = new ProcessStream(conn, 'p', sink);
    await start(conn, 'p', 'for i in $(seq 1 300); do echo out$i; done; exit 3');
    await waitFor(() => sink.isClosed, 'the close');
    assert.equal(sink.text, lines(300, 'out'));
    assert.deepEqual(sink.exit, [3, null]);
    assert.equal(stream.isExited && stream.isClosed, true);
    const acks = () => sentNotifications(comm, 'process/ack');
    await waitFor(() => acks().length > 0, 'an ack');
    const last = acks()[acks().length - 1];
    assert.equal(last.processId, 'p');
    assert.ok((last.seq as number) >= stream.lastSeq - 2, `acked ${last.seq} of ${stream.lastSeq}`);
    stream.dispose();
  } finally {
    await kernel.shutdown();
  }
});

test('lost notifications leave holes that process/read fills, in order', async () => {
  const { kernel, comm, conn } = await openConnection();
  try {
    let n = 0;
    let dropped = 0;
    comm.drop = msg => {
      if (msg.method === 'process/output' && ++n % 3 === 0) {
        dropped++;
        return true;
      }
      return false;
    };
    const sink = new Sink();
    const stream = new ProcessStream(conn, 'p', sink);
    // Small gaps between lines make many small notifications.
    await start(conn, 'p', 'for i in $(seq 1 40); do echo r$i; sleep 0.01; done');
    await waitFor(() => sink.isClosed, 'the close', 10000);
    assert.ok(dropped >= 3, `dropped ${dropped}`);
    assert.equal(sink.text, lines(40, 'r'));
    assert.ok(comm.sent.some(m => m.method === 'process/read'), 'a process/read filled the holes');
    stream.dispose();
  } finally {
    await kernel.shutdown();
  }
});

test('a late subscriber gets the retained output replayed, from the seq it asks', async () => {
  const { kernel, conn } = await openConnection();
  try {
    const first = new Sink();
    const owner = new ProcessStream(conn, 'p', first);
    await start(conn, 'p', 'echo one; sleep 0.2; echo two; sleep 30');
    await waitFor(() => first.text === 'one\ntwo\n', 'two lines');
    // A second panel on the same process, which has already shown seq 1.
    const second = new Sink();
    const late = new ProcessStream(conn, 'p', second, 1);
    await late.subscribe();
    await waitFor(() => late.lastSeq === owner.lastSeq, 'the replay');
    assert.equal(second.text, first.text.slice(first.chunks[0].byteLength));
    owner.dispose();
    late.dispose();
  } finally {
    await kernel.shutdown();
  }
});

test('output the sink holds back is not acked, so the kernel stops reading a flood', async () => {
  const { kernel, comm, conn } = await openConnection();
  try {
    const sink = new Sink(true);
    const stream = new ProcessStream(conn, 'p', sink);
    await start(conn, 'p', 'yes flood');
    // The server sends up to its flow-control window of unacked output (4 MiB), then waits.
    await waitFor(() => sink.bytes >= 1 << 20, 'the first MiB');
    let before = -1;
    await waitFor(
      () => {
        const still = sink.bytes === before;
        before = sink.bytes;
        return still;
      },
      'the flood to pause',
      20000
    );
    assert.ok(sink.bytes <= 8 << 20, `paused after ${sink.bytes} bytes`);
    assert.equal(sentNotifications(comm, 'process/ack').length, 0);
    // Consuming it lets the flood go on.
    const paused = sink.bytes;
    sink.held.splice(0).forEach(done => done());
    await waitFor(() => sink.bytes > paused + (1 << 20), 'more output after the acks');
    stream.dispose();
    await conn.request('process/terminate', { processId: 'p' });
  } finally {
    await kernel.shutdown();
  }
});

/**
 * In-order delivery of one process's events to one consumer.
 *
 * Why: comm notifications can be lost (IOPub queues drop past their
 * high-water mark, a websocket reconnect loses what was in flight) and a
 * replay can overlap live events. Every event carries the process's seq, so
 * this class applies each seq exactly once, in order, fetches holes with
 * `process/read`, and acknowledges consumed output (`process/ack`) only once
 * the consumer has really used it: that is what lets the kernel stop reading a
 * `yes` flood instead of burying the page.
 */
import { IDisposable } from '@lumino/disposable';

import { ExecConnection, IWithBuffers } from './connection';
import { IReadResult, ProcessEvent, resolveBytes, Stream } from './protocol';

/** Where a stream's events go (the terminal widget). */
export interface IStreamSink {
  /**
   * Consume output of `stream` (raw bytes, as the process wrote them); call
   * `done` once it is used (parsed by xterm).
   */
  write(data: Uint8Array, done: () => void, stream: Stream): void;
  exited(exitCode: number | null, signal: string | null): void;
  closed(): void;
  /** A line for the user about the stream itself (lost output). */
  notice(text: string): void;
}

/**
 * When to acknowledge consumed output. Acks exist for flow control only: the
 * kernel pauses a process once it runs a window (4 MiB by default) past the
 * last ack. So an ack goes out at once after {@link ACK_BYTES} (1/16 of that
 * window) or {@link ACK_CHUNKS} chunks (each unacked chunk costs the kernel a
 * little bookkeeping), and otherwise once output has been quiet for
 * {@link ACK_IDLE_MS} (so a smaller window cannot stall, and the kernel learns
 * where we are). Typing therefore sends one message per key and no ack: an ack
 * 40 ms after every echo, as before, doubled the messages on the kernel's
 * websocket while typing (issue 15). When output goes quiet the stream also
 * reads after its last seq once: a notification lost at the very end of a burst
 * leaves no hole to notice (nothing follows it), and this finds it.
 */
const ACK_BYTES = 256 * 1024;
const ACK_CHUNKS = 256;
const ACK_IDLE_MS = 500;
/** `process/read` page size when refilling a hole. */
const READ_BYTES = 1024 * 1024;

export class ProcessStream implements IDisposable {
  /**
   * @param afterSeq - the last seq the sink already holds (0: nothing).
   */
  constructor(
    private _conn: ExecConnection,
    readonly processId: string,
    private _sink: IStreamSink,
    afterSeq = 0
  ) {
    this._next = afterSeq + 1;
    this._conn.processEvent.connect(this._onEvent, this);
    this._conn.reconnected.connect(this._onReconnected, this);
  }

  /** The newest seq the sink has received, in order. */
  get lastSeq(): number {
    return this._next - 1;
  }

  get isExited(): boolean {
    return this._exited;
  }

  get isClosed(): boolean {
    return this._closed;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Subscribe: the kernel replays retained events after `lastSeq`, then streams. */
  async subscribe(): Promise<void> {
    await this._conn.request('process/subscribe', { processId: this.processId, afterSeq: this.lastSeq });
  }

  /** Fetch whatever is missing after `lastSeq` with `process/read`. */
  async refill(): Promise<void> {
    if (this._refilling) {
      this._refillAgain = true;
      return;
    }
    this._refilling = true;
    try {
      do {
        this._refillAgain = false;
        await this._refillOnce();
      } while (this._refillAgain && !this._disposed);
    } catch (err) {
      if (!this._disposed && !this._conn.disconnect) {
        console.warn('codex-exec: refill failed', err);
      }
    } finally {
      this._refilling = false;
    }
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    window.clearTimeout(this._ackTimer);
    this._conn.processEvent.disconnect(this._onEvent, this);
    this._conn.reconnected.disconnect(this._onReconnected, this);
    this._pending.clear();
  }

  private async _refillOnce(): Promise<void> {
    for (let guard = 0; guard < 10000 && !this._disposed; guard++) {
      const afterSeq = this.lastSeq;
      const result = await this._conn.request<IReadResult & IWithBuffers>('process/read', {
        processId: this.processId,
        afterSeq,
        maxBytes: READ_BYTES
      });
      if (this._disposed || this.lastSeq !== afterSeq) {
        // Live events moved us on meanwhile: start over from the new point.
        if (this.lastSeq > afterSeq) {
          continue;
        }
        return;
      }
      if (result.firstRetainedSeq > this._next) {
        this._sink.notice(
          `[codex-exec: ${result.firstRetainedSeq - this._next} earlier events are no longer retained by the kernel]`
        );
        this._next = result.firstRetainedSeq;
      }
      for (const chunk of result.chunks) {
        if (chunk.seq < this._next) {
          continue;
        }
        // Seqs skipped between chunks belong to exit/close events.
        this._next = chunk.seq;
        this._apply({
          kind: 'output',
          processId: this.processId,
          seq: chunk.seq,
          stream: chunk.stream,
          data: resolveBytes(chunk.chunk, result.__buffers__)
        });
      }
      if (result.chunks.length === 0) {
        if (result.exited && !this._exited) {
          this._exited = true;
          this._sink.exited(result.exitCode, null);
        }
        if (result.closed && !this._closed) {
          this._closed = true;
          this._sink.closed();
        }
        this._next = Math.max(this._next, result.nextSeq);
        this._drain();
        return;
      }
      this._drain();
      if (this._pending.size === 0 && result.nextSeq <= this._next) {
        // Caught up with everything the read could see.
        if (!result.closed) {
          return;
        }
      }
    }
  }

  private _onEvent(_: ExecConnection, event: ProcessEvent): void {
    if (this._disposed || event.processId !== this.processId) {
      return;
    }
    if (event.seq < this._next) {
      // A replay overlapping what we have, or the exit event after a refill
      // reported it: only the latter still carries news (the signal name).
      if (event.kind === 'exited' && !this._exited) {
        this._exited = true;
        this._sink.exited(event.exitCode, event.signal);
      }
      if (event.kind === 'closed' && !this._closed) {
        this._closed = true;
        this._sink.closed();
      }
      return;
    }
    if (event.seq === this._next) {
      this._apply(event);
      this._drain();
      return;
    }
    this._pending.set(event.seq, event);
    // A hole: wait a moment for a replay in flight, then read it.
    if (!this._holeTimer) {
      this._holeTimer = window.setTimeout(() => {
        this._holeTimer = 0;
        if (this._pending.size > 0) {
          void this.refill();
        }
      }, 100);
    }
  }

  private _onReconnected(): void {
    void this.refill();
  }

  private _drain(): void {
    for (;;) {
      // Drop what a refill made stale.
      for (const seq of this._pending.keys()) {
        if (seq < this._next) {
          const stale = this._pending.get(seq)!;
          this._pending.delete(seq);
          if (stale.kind !== 'output') {
            this._onEvent(this._conn, stale);
          }
        }
      }
      const event = this._pending.get(this._next);
      if (!event) {
        return;
      }
      this._pending.delete(this._next);
      this._apply(event);
    }
  }

  private _apply(event: ProcessEvent): void {
    this._next = event.seq + 1;
    switch (event.kind) {
      case 'output': {
        const seq = event.seq;
        const size = event.data.byteLength;
        this._sink.write(event.data, () => this._consumed(seq, size), event.stream);
        break;
      }
      case 'exited':
        if (!this._exited) {
          this._exited = true;
          this._sink.exited(event.exitCode, event.signal);
        }
        break;
      case 'closed':
        if (!this._closed) {
          this._closed = true;
          this._sink.closed();
        }
        break;
    }
  }

  /** The sink used output `seq`: ack at a threshold, or once output is quiet. */
  private _consumed(seq: number, size: number): void {
    if (this._disposed) {
      return;
    }
    this._ackSeq = Math.max(this._ackSeq, seq);
    this._unackedBytes += size;
    this._unackedChunks++;
    window.clearTimeout(this._ackTimer);
    if (this._unackedBytes >= ACK_BYTES || this._unackedChunks >= ACK_CHUNKS) {
      this._sendAck();
    } else {
      this._ackTimer = window.setTimeout(() => this._quiet(), ACK_IDLE_MS);
    }
  }

  /** Output has been quiet for a while: ack it, and check for a lost tail. */
  private _quiet(): void {
    this._sendAck();
    if (!this._closed) {
      void this.refill();
    }
  }

  private _sendAck(): void {
    window.clearTimeout(this._ackTimer);
    this._ackTimer = 0;
    this._unackedBytes = 0;
    this._unackedChunks = 0;
    if (this._ackSeq > this._ackedSeq) {
      this._ackedSeq = this._ackSeq;
      this._conn.notify('process/ack', { processId: this.processId, seq: this._ackSeq });
    }
  }

  private _next: number;
  private _pending = new Map<number, ProcessEvent>();
  private _refilling = false;
  private _refillAgain = false;
  private _holeTimer = 0;
  private _ackTimer = 0;
  private _ackSeq = 0;
  private _ackedSeq = 0;
  private _unackedBytes = 0;
  private _unackedChunks = 0;
  private _exited = false;
  private _closed = false;
  private _disposed = false;
}

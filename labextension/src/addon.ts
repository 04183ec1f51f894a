/**
 * An xterm.js addon that binds a terminal to one process of a kernel's
 * process table: keystrokes go out as `process/write`, output comes in
 * through a {@link ProcessStream} into `term.write(data, done)`, and the
 * terminal's size goes out as `process/resize`.
 *
 * Why an addon: it is the part xterm's own attach addon plays for a
 * websocket, kept apart from the panel (title, status, reconnecting, a new
 * shell on Enter) so it can be tested on xterm's headless terminal. The
 * keystroke path is kept short on purpose: `onData` → encode → one
 * notification, nothing that waits for a frame (see cursor.ts for why that
 * matters).
 */
import type { IDisposable, ITerminalAddon, Terminal } from '@xterm/xterm';

import { ExecConnection } from './connection';
import { ISize, RpcError, Stream } from './protocol';
import { asTerminalOutput } from './shellstart';
import { fetchSnapshot, IScreenSnapshot } from './snapshot';
import { ProcessStream } from './stream';

/** What the addon uses of a terminal (xterm's, or its headless twin). */
export type IProcessTerminal = Pick<Terminal, 'onData' | 'onBinary' | 'onResize' | 'write' | 'reset' | 'rows' | 'cols'>;

/** The panel's side of the addon. */
export interface IProcessAddonHost {
  /** Output is about to be written (the panel shows its cursor first). */
  beforeWrite?(): void;
  exited(exitCode: number | null, signal: string | null): void;
  closed(): void;
  /** A key typed once the process ended (the panel starts a new shell on Enter). */
  endedInput(bytes: Uint8Array): void;
}

/** How long size changes settle before one `process/resize` goes out. */
export const RESIZE_DEBOUNCE_MS = 30;

const encoder = new TextEncoder();

export class ProcessTerminalAddon implements ITerminalAddon {
  constructor(private _host: IProcessAddonHost) {}

  /** The stream of the bound process, if any. */
  get stream(): ProcessStream | null {
    return this._stream;
  }

  /** True once the process ended (its stream closed, or {@link end} was called). */
  get isEnded(): boolean {
    return this._ended;
  }

  activate(term: IProcessTerminal): void {
    this._term = term;
    this._listeners.push(
      term.onData(data => this._input(encoder.encode(data))),
      term.onBinary(data => {
        const bytes = new Uint8Array(data.length);
        for (let i = 0; i < data.length; i++) {
          bytes[i] = data.charCodeAt(i) & 0xff;
        }
        this._input(bytes);
      }),
      term.onResize(() => this._scheduleResize())
    );
  }

  /**
   * Show process `processId` of `conn` from after `afterSeq`. Input waits in
   * the queue until {@link live}; the stream is returned to subscribe with.
   */
  bind(conn: ExecConnection, processId: string, afterSeq: number): ProcessStream {
    this._stream?.dispose();
    this._conn = conn;
    this._live = false;
    this._ended = false;
    this._stream = new ProcessStream(conn, processId, this._sink, afterSeq);
    return this._stream;
  }

  /**
   * Show process `processId` of `conn` from its current screen: a
   * `process/snapshot` at this terminal's size is written to the reset
   * terminal, and the stream continues after the snapshot's seq. Where the
   * kernel has no snapshot (an older kernel, a pipe process) the stream
   * replays the retained output from the start instead. Subscribe with the
   * returned stream, then call {@link live} (its resize makes the program
   * redraw when the process's size differs from the terminal's).
   */
  async bindFromScreen(
    conn: ExecConnection,
    processId: string
  ): Promise<{ stream: ProcessStream; snapshot: IScreenSnapshot | null }> {
    const term = this._term!;
    this._stream?.dispose();
    this._stream = null;
    this._live = false;
    const snapshot = await fetchSnapshot(conn, processId, { rows: term.rows, cols: term.cols });
    if (snapshot) {
      this._host.beforeWrite?.();
      term.reset();
      term.write(snapshot.data);
    }
    return { stream: this.bind(conn, processId, snapshot?.seq ?? 0), snapshot };
  }

  /**
   * {@link bindFromScreen}, then subscribe after the snapshot's seq. A process
   * that ended before the snapshot has its end read back, so the host hears of it.
   */
  async subscribeFromScreen(conn: ExecConnection, processId: string): Promise<ProcessStream> {
    const { stream, snapshot } = await this.bindFromScreen(conn, processId);
    await stream.subscribe();
    if (snapshot && (snapshot.exited || snapshot.closed)) {
      await stream.refill();
    }
    return stream;
  }

  /**
   * The bound process runs and is subscribed: send its size, then the input
   * typed meanwhile. `startedAt`: the size it was started with (sent again
   * only if the terminal changed since).
   */
  live(startedAt?: ISize): void {
    this._live = true;
    if (startedAt) {
      this._lastSize = sizeKey(startedAt);
      this._sendResize(false);
    } else {
      this._sendResize(true);
    }
    this._flush();
  }

  /** No process for now (a new one is coming): input waits in the queue. */
  unbind(): void {
    this._stream?.dispose();
    this._stream = null;
    this._live = false;
    this._ended = false;
  }

  /** The process is gone: input goes to the host's `endedInput`. */
  end(): void {
    this.unbind();
    this._ended = true;
  }

  dispose(): void {
    this._stream?.dispose();
    this._stream = null;
    window.clearTimeout(this._resizeTimer);
    this._listeners.forEach(l => l.dispose());
    this._listeners = [];
  }

  private _sink = {
    write: (data: Uint8Array, done: () => void, stream: Stream): void => {
      this._host.beforeWrite?.(); // first: after typing, xterm parses within write()
      // Pipe output (a non-tty process or session) shown as `onlcr` would: no staircase.
      this._term!.write(asTerminalOutput(stream, data), done);
    },
    exited: (exitCode: number | null, signal: string | null): void => this._host.exited(exitCode, signal),
    closed: (): void => {
      this._ended = true;
      this._host.closed();
    },
    notice: (text: string): void => this._term!.write(`\r\n\x1b[2m${text}\x1b[0m\r\n`)
  };

  private _input(bytes: Uint8Array): void {
    if (this._ended) {
      this._host.endedInput(bytes);
      return;
    }
    this._queue.push(bytes);
    this._flush();
  }

  /**
   * Send queued input as one `process/write` *notification*. No response
   * comes back, so a keystroke costs one message to the kernel, and its echo
   * plus the kernel's busy/idle status back: the fewest the protocol allows.
   * The comm keeps the order. A write the kernel refuses (the process just
   * ended) needs no answer either: the exit event tells the user. Input typed
   * before the process runs, or while the connection is lost, waits here.
   */
  private _flush(): void {
    const conn = this._conn;
    if (!this._queue.length || !this._live || !this._stream || !conn || conn.disconnect) {
      return;
    }
    if (this._resizeTimer) {
      // Input typed after a resize must find the PTY at its new size.
      this._sendResize(false);
    }
    const bytes = this._queue.length === 1 ? this._queue[0] : concat(this._queue);
    this._queue = [];
    conn.notify('process/write', { processId: this._stream.processId, chunk: { buffer: 0 } }, [bytes]);
  }

  private _scheduleResize(): void {
    window.clearTimeout(this._resizeTimer);
    this._resizeTimer = window.setTimeout(() => this._sendResize(false), RESIZE_DEBOUNCE_MS);
  }

  private _sendResize(force: boolean): void {
    window.clearTimeout(this._resizeTimer);
    this._resizeTimer = 0;
    const conn = this._conn;
    const term = this._term;
    if (!this._live || !this._stream || !conn || conn.disconnect || !term) {
      return;
    }
    const size = { rows: term.rows, cols: term.cols };
    if (!force && sizeKey(size) === this._lastSize) {
      return;
    }
    this._lastSize = sizeKey(size);
    conn.request('process/resize', { processId: this._stream.processId, ...size }).catch(err => {
      // Not a tty (an attached pipe process) or gone: nothing to resize.
      if (!(err instanceof RpcError)) {
        console.warn('codex-exec: resize failed', err);
      }
    });
  }

  private _term: IProcessTerminal | null = null;
  private _listeners: IDisposable[] = [];
  private _conn: ExecConnection | null = null;
  private _stream: ProcessStream | null = null;
  private _live = false;
  private _ended = false;
  private _queue: Uint8Array[] = [];
  private _resizeTimer = 0;
  private _lastSize = '';
}

function sizeKey(size: ISize): string {
  return `${size.rows}x${size.cols}`;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, b) => n + b.byteLength, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

/**
 * One holder's link to one kernel: the pool lease, the open `codex.exec`
 * connection, and a new connection when the old one is lost.
 *
 * Why a class of its own: the panel and the sidebar each kept their own copy
 * of "borrow the kernel, open a comm, open another when it ends", and the
 * sidebar's copy raced (a stale connect's cleanup cleared the newer one's
 * state, so a second comm was opened and leaked). Here a link serves one
 * kernel for its whole life: concurrent `connect()` calls share one open, and
 * whatever an open finds after `dispose()` it closes and gives back itself.
 * A holder that shows another kernel makes another link.
 */
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { ExecConnection, IDisconnect } from './connection';
import { IKernelLease, IKernelLeaser, KernelGoneError } from './kernels';

export interface IKernelLinkOptions {
  pool: IKernelLeaser;
  kernelId: string;
  /** Name sent in `initialize` (shows up in the kernel's logs). */
  clientName: string;
  /** Load the extension into a plain IPython kernel (see `ExecConnection.open`); default true. */
  loadExtension?: boolean;
  /**
   * Open a new connection by itself, with backoff, when one ends while the
   * kernel's processes live on (a lost websocket, a closed comm); default false.
   */
  reconnect?: boolean;
}

/** Raised by `connect()` on a link that was disposed meanwhile. */
export class LinkClosedError extends Error {
  constructor() {
    super('the kernel link was closed');
    this.name = 'LinkClosedError';
  }
}

/** The first wait between reconnect attempts; it doubles up to the maximum. */
export const RECONNECT_FIRST_MS = 500;
export const RECONNECT_MAX_MS = 30000;

export class KernelLink implements IDisposable {
  constructor(options: IKernelLinkOptions) {
    this._pool = options.pool;
    this.kernelId = options.kernelId;
    this._clientName = options.clientName;
    this._loadExtension = options.loadExtension ?? true;
    this._autoReconnect = options.reconnect ?? false;
  }

  readonly kernelId: string;

  /** The newest connection, alive or ended; null before the first. */
  get connection(): ExecConnection | null {
    return this._conn;
  }

  /** The kernel lease (its `info` is the kernel_info reply), while held. */
  get lease(): IKernelLease | null {
    return this._lease;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Emitted when the connection ends; `processesLost` says whether a reconnect follows. */
  get lost(): ISignal<this, IDisconnect> {
    return this._lost;
  }

  /** Emitted with the new connection once a reconnect succeeded. */
  get reconnected(): ISignal<this, ExecConnection> {
    return this._reconnected;
  }

  /** Emitted when reconnecting found the kernel gone; the link then stops trying. */
  get gone(): ISignal<this, KernelGoneError> {
    return this._gone;
  }

  /**
   * The live connection, or a new one (borrowing the kernel first when
   * needed). Calls while an open is in flight share it.
   */
  connect(): Promise<ExecConnection> {
    if (this._disposed) {
      return Promise.reject(new LinkClosedError());
    }
    if (this._conn && !this._conn.disconnect) {
      return Promise.resolve(this._conn);
    }
    if (!this._opening) {
      const opening: Promise<ExecConnection> = this._open().finally(() => {
        // Only this open's own end clears it, never a later open's.
        if (this._opening === opening) {
          this._opening = null;
        }
      });
      this._opening = opening;
    }
    return this._opening;
  }

  /** Close the connection and give the kernel back; the kernel's processes go on. */
  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._conn?.dispose();
    this._lease?.release();
    this._lease = null;
    Signal.clearData(this);
  }

  private async _open(): Promise<ExecConnection> {
    let lease = this._lease;
    if (!lease || lease.kernel.isDisposed) {
      lease?.release();
      this._lease = null;
      lease = await this._pool.acquire(this.kernelId);
      if (this._disposed) {
        lease.release();
        throw new LinkClosedError();
      }
      this._lease = lease;
    } else if (lease.kernel.connectionStatus === 'disconnected') {
      await lease.kernel.reconnect();
    }
    const conn = await ExecConnection.open(lease.kernel, {
      clientName: this._clientName,
      kernelInfo: lease.info,
      loadExtension: this._loadExtension
    });
    if (this._disposed) {
      conn.dispose();
      throw new LinkClosedError();
    }
    this._conn?.dispose();
    this._conn = conn;
    conn.ended.connect(this._onEnded, this);
    return conn;
  }

  private _onEnded(conn: ExecConnection, info: IDisconnect): void {
    if (conn !== this._conn || this._disposed) {
      return;
    }
    if (info.processesLost && this._lease) {
      // A restart ends the kernel's subshells too: the next connect borrows
      // afresh, and the pool makes a new subshell for it.
      this._lease.release();
      this._lease = null;
    }
    this._lost.emit(info);
    if (!info.processesLost && this._autoReconnect) {
      void this._reconnect();
    }
  }

  /** Open a new connection until one opens, the kernel is gone or the link closes. */
  private async _reconnect(): Promise<void> {
    if (this._reconnecting) {
      return;
    }
    this._reconnecting = true;
    try {
      for (let attempt = 0; !this._disposed; attempt++) {
        try {
          const conn = await this.connect();
          this._reconnected.emit(conn);
          return;
        } catch (err) {
          if (err instanceof KernelGoneError) {
            this._gone.emit(err);
            return;
          }
          if (this._disposed) {
            return;
          }
          const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** attempt);
          await new Promise(resolve => window.setTimeout(resolve, delay));
        }
      }
    } finally {
      this._reconnecting = false;
    }
  }

  private _pool: IKernelLeaser;
  private _clientName: string;
  private _loadExtension: boolean;
  private _autoReconnect: boolean;
  private _lease: IKernelLease | null = null;
  private _conn: ExecConnection | null = null;
  private _opening: Promise<ExecConnection> | null = null;
  private _reconnecting = false;
  private _disposed = false;
  private _lost = new Signal<this, IDisconnect>(this);
  private _reconnected = new Signal<this, ExecConnection>(this);
  private _gone = new Signal<this, KernelGoneError>(this);
}

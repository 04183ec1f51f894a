/**
 * One codex-exec connection over one Jupyter comm.
 *
 * Why a class of its own: every panel and the sidebar need the same three
 * things from the kernel (JSON-RPC requests with replies, notifications turned
 * into typed process events, and a clean "the connection is gone" signal), and
 * the comm has a trap worth solving once: loading the extension into a plain
 * ipykernel that lacks the comm target. (Putting the comm on a subshell, so a
 * busy cell does not freeze the terminal, is the kernel pool's job.)
 */
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { JSONObject, PromiseDelegate } from '@lumino/coreutils';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import {
  Buffers,
  COMM_TARGET,
  ErrorCode,
  IInitializeResult,
  INotification,
  IResponse,
  ProcessEvent,
  RpcError,
  toProcessEvent
} from './protocol';

/** Why a connection ended, shown to the user. */
export interface IDisconnect {
  reason: string;
  /** True when the kernel's processes are gone too (restart, shutdown). */
  processesLost: boolean;
}

/** Raised when the kernel cannot serve the codex.exec comm at all. */
export class UnsupportedKernelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedKernelError';
  }
}

/** Options of {@link ExecConnection.open}. */
export interface IOpenOptions {
  /** Name sent in `initialize` (shows up in the kernel's logs). */
  clientName: string;
  /** Load the extension into a plain IPython kernel when the target is missing. */
  loadExtension?: boolean;
  /** The kernel_info reply, when known (saves waiting for the busy shell). */
  kernelInfo?: KernelMessage.IInfoReply | null;
}

/**
 * A client of the kernel's process table.
 *
 * Create with {@link ExecConnection.open}; it resolves after the handshake
 * (`initialize` + `initialized`) so every method can be used at once.
 */
export class ExecConnection implements IDisposable {
  private constructor(
    readonly kernel: Kernel.IKernelConnection,
    private _comm: Kernel.IComm
  ) {
    _comm.onMsg = msg => this._onMsg(msg);
    _comm.onClose = () => {
      if (!this._disconnect) {
        this._closedByKernel = true;
      }
      this._end({ reason: 'the kernel closed the connection', processesLost: false });
    };
    kernel.statusChanged.connect(this._onKernelStatus, this);
    kernel.disposed.connect(this._onKernelDisposed, this);
    kernel.connectionStatusChanged.connect(this._onConnectionStatus, this);
  }

  /**
   * Open a comm on `kernel`, on a subshell when the kernel has them, and do
   * the handshake. When the kernel has no `codex.exec` target and speaks
   * Python, run `%load_ext codex_exec_kernel` silently and try once more.
   */
  static async open(kernel: Kernel.IKernelConnection, options: IOpenOptions): Promise<ExecConnection> {
    try {
      return await ExecConnection._openOnce(kernel, options);
    } catch (err) {
      if (!(err instanceof TargetMissingError) || options.loadExtension === false) {
        throw err;
      }
    }
    const printed = await loadExtension(kernel, options.kernelInfo ?? (await kernel.info));
    try {
      return await ExecConnection._openOnce(kernel, options);
    } catch (err) {
      if (err instanceof TargetMissingError) {
        const said = printed.trim() ? ` It printed: ${printed.trim()}` : '';
        throw new UnsupportedKernelError(
          `%load_ext codex_exec_kernel ran but the kernel still has no "codex.exec" comm target.${said}`
        );
      }
      throw err;
    }
  }

  private static async _openOnce(kernel: Kernel.IKernelConnection, options: IOpenOptions): Promise<ExecConnection> {
    // The comm's messages go where the connection's `subshellId` points (the
    // pool made a subshell for it), or to the main shell.
    const comm = kernel.createComm(COMM_TARGET);
    const conn = new ExecConnection(kernel, comm);
    comm.open({});
    try {
      const result = await conn.request<IInitializeResult>('initialize', {
        clientName: options.clientName,
        flowControl: true
      });
      conn._initializeResult = result;
      conn.notify('initialized', {});
      return conn;
    } catch (err) {
      const closedByKernel = conn._closedByKernel;
      conn.dispose();
      if (err instanceof RpcError && err.code === ErrorCode.transport && closedByKernel) {
        // The kernel answered our comm_open with comm_close: no such target.
        throw new TargetMissingError();
      }
      throw err;
    }
  }

  /** The `initialize` result: server name, version, shell, hostname. */
  get initializeResult(): IInitializeResult {
    return this._initializeResult!;
  }

  /** The id of the comm (one comm = one connection). */
  get commId(): string {
    return this._comm.commId;
  }

  /** Emitted for every `process/output`, `process/exited`, `process/closed`. */
  get processEvent(): ISignal<this, ProcessEvent> {
    return this._processEvent;
  }

  /** Emitted once when the connection ends. */
  get ended(): ISignal<this, IDisconnect> {
    return this._ended;
  }

  /** Emitted when the websocket to the kernel comes back after a loss. */
  get reconnected(): ISignal<this, void> {
    return this._reconnected;
  }

  /** Why the connection ended, or null while it is alive. */
  get disconnect(): IDisconnect | null {
    return this._disconnect;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /**
   * Send a request and wait for its reply. `buffers` travel as the comm
   * message's binary buffers (refer to them as `{buffer: i}` in params).
   */
  request<T>(method: string, params?: JSONObject, buffers?: ArrayBufferView[], timeoutMs = 0): Promise<T> {
    if (this._disconnect) {
      return Promise.reject(new RpcError(ErrorCode.transport, this._disconnect.reason));
    }
    const id = this._nextId++;
    const delegate = new PromiseDelegate<unknown>();
    this._pending.set(id, delegate);
    let timer = 0;
    if (timeoutMs > 0) {
      timer = window.setTimeout(() => {
        if (this._pending.delete(id)) {
          delegate.reject(new RpcError(ErrorCode.transport, `${method}: no reply within ${timeoutMs} ms`));
        }
      }, timeoutMs);
    }
    const data: JSONObject = { jsonrpc: '2.0', id, method };
    if (params !== undefined) {
      data.params = params;
    }
    try {
      this._comm.send(data, undefined, buffers ?? [], true);
    } catch (err) {
      this._pending.delete(id);
      return Promise.reject(new RpcError(ErrorCode.transport, String(err)));
    }
    return delegate.promise.finally(() => window.clearTimeout(timer)) as Promise<T>;
  }

  /** Send a notification (no reply); `buffers` as in {@link request}. */
  notify(method: string, params?: JSONObject, buffers?: ArrayBufferView[]): void {
    if (this._disconnect) {
      return;
    }
    const data: JSONObject = { jsonrpc: '2.0', method };
    if (params !== undefined) {
      data.params = params;
    }
    try {
      this._comm.send(data, undefined, buffers ?? [], true);
    } catch {
      // The comm is going away; `ended` will tell the owner.
    }
  }

  /** Close the comm; the kernel's processes go on. */
  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this.kernel.statusChanged.disconnect(this._onKernelStatus, this);
    this.kernel.disposed.disconnect(this._onKernelDisposed, this);
    this.kernel.connectionStatusChanged.disconnect(this._onConnectionStatus, this);
    if (!this._disconnect) {
      this._end({ reason: 'connection closed', processesLost: false });
      try {
        if (!this._comm.isDisposed && !this.kernel.isDisposed) {
          this._comm.close();
        }
      } catch {
        // Closing is best effort: the kernel may be gone already.
      }
    }
    Signal.clearData(this);
  }

  private _onMsg(msg: KernelMessage.ICommMsgMsg): void {
    const raw = msg.content.data as unknown;
    const buffers = msg.buffers;
    if (typeof raw !== 'object' || raw === null) {
      return;
    }
    const data = raw as Partial<IResponse> & Partial<INotification>;
    if (data.method === undefined && typeof data.id === 'number') {
      const pending = this._pending.get(data.id);
      if (!pending) {
        return;
      }
      this._pending.delete(data.id);
      if (data.error) {
        pending.reject(new RpcError(data.error.code, data.error.message, data.error.data));
      } else {
        pending.resolve(withBuffers(data.result, buffers));
      }
      return;
    }
    if (typeof data.method === 'string') {
      const event = toProcessEvent(data as INotification, buffers);
      if (event) {
        this._processEvent.emit(event);
      }
    }
  }

  private _onKernelStatus(_: Kernel.IKernelConnection, status: KernelMessage.Status): void {
    if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      this._end({
        reason: status === 'dead' ? 'the kernel died' : 'the kernel restarted',
        processesLost: true
      });
    }
  }

  private _onKernelDisposed(): void {
    this._end({ reason: 'the kernel connection was shut down', processesLost: true });
  }

  private _onConnectionStatus(_: Kernel.IKernelConnection, status: Kernel.ConnectionStatus): void {
    if (status === 'connected' && this._lostConnection) {
      this._lostConnection = false;
      this._reconnected.emit();
    } else if (status === 'connecting') {
      this._lostConnection = true;
    } else if (status === 'disconnected') {
      this._end({ reason: 'the connection to the kernel was lost', processesLost: false });
    }
  }

  private _end(disconnect: IDisconnect): void {
    if (this._disconnect) {
      return;
    }
    this._disconnect = disconnect;
    const pending = Array.from(this._pending.values());
    this._pending.clear();
    for (const p of pending) {
      p.reject(new RpcError(ErrorCode.transport, disconnect.reason));
    }
    this._ended.emit(disconnect);
  }

  private _initializeResult: IInitializeResult | null = null;
  private _nextId = 1;
  private _pending = new Map<number, PromiseDelegate<unknown>>();
  private _processEvent = new Signal<this, ProcessEvent>(this);
  private _ended = new Signal<this, IDisconnect>(this);
  private _reconnected = new Signal<this, void>(this);
  private _disconnect: IDisconnect | null = null;
  private _lostConnection = false;
  private _closedByKernel = false;
  private _isDisposed = false;
}

/** The kernel closed our comm right away: it has no `codex.exec` target. */
class TargetMissingError extends Error {}

/** A result with the message's buffers attached (for `process/read`). */
export interface IWithBuffers {
  __buffers__?: Buffers;
}

function withBuffers(result: unknown, buffers: Buffers): unknown {
  if (result && typeof result === 'object' && buffers && buffers.length) {
    Object.defineProperty(result, '__buffers__', { value: buffers, enumerable: false });
  }
  return result;
}

/**
 * Run `%load_ext codex_exec_kernel` silently; throw an
 * {@link UnsupportedKernelError} that says why when it cannot work. Returns
 * what the magic printed: IPython reports some failures ("... is not an
 * IPython extension") as text with an "ok" reply.
 */
async function loadExtension(kernel: Kernel.IKernelConnection, info: KernelMessage.IInfoReply): Promise<string> {
  const language = info.language_info?.name ?? '';
  if (language.toLowerCase() !== 'python') {
    throw new UnsupportedKernelError(
      `The kernel "${kernel.name}" (${language || 'unknown language'}) has no "codex.exec" comm target, ` +
        'and only a Python kernel can load it. Use the "codex-exec" kernel, or install ' +
        'codex-exec-kernel where the kernel runs.'
    );
  }
  const future = kernel.requestExecute(
    { code: '%load_ext codex_exec_kernel', silent: true, store_history: false, allow_stdin: false },
    true
  );
  let printed = '';
  future.onIOPub = msg => {
    if (KernelMessage.isStreamMsg(msg)) {
      printed += msg.content.text;
    }
  };
  const reply = await future.done;
  const content = reply.content as KernelMessage.IExecuteReplyMsg['content'] & {
    ename?: string;
    evalue?: string;
  };
  if (content.status !== 'ok') {
    const why =
      content.ename === 'ModuleNotFoundError'
        ? 'the package codex-exec-kernel is not installed in the kernel\'s environment ' +
          '(pip install codex-exec-kernel there)'
        : `${content.ename ?? content.status}: ${content.evalue ?? ''}`;
    throw new UnsupportedKernelError(
      `The kernel "${kernel.name}" has no "codex.exec" comm target and %load_ext codex_exec_kernel failed: ${why}.`
    );
  }
  return printed;
}

/**
 * Kernel connections for terminals, kept apart from the notebooks' own.
 *
 * Why private connections: terminal output is a flood of comm messages, and
 * a notebook's KernelConnection handles its messages one at a time; sharing it
 * would make the notebook wait behind the terminal. Each kernel gets one
 * extra websocket, shared by every panel and the sidebar on that kernel.
 *
 * Why the subshell is made here, over the control channel: a new
 * KernelConnection learns whether the kernel has subshells from a
 * `kernel_info_request` on the *shell* channel, which a busy notebook cell
 * holds up until it finishes. Control is served while the shell is busy, so
 * we ask `kernel_info` and `create_subshell` there and set the connection's
 * `subshellId`: every shell message of this connection (comm_open, comm_msg,
 * execute of `%load_ext`) then runs in that subshell's thread.
 *
 * Why `_handleCommOpen` is silenced: a second connection that handles comms
 * answers a kernel-opened comm (an ipywidget) it does not know with
 * `comm_close`, which would break the notebook's widgets. Ours only ever opens
 * comms itself, so it ignores comm_open from the kernel.
 */
import {
  CommsOverSubshells,
  Kernel,
  KernelAPI,
  KernelConnection,
  KernelMessage,
  ServerConnection,
  ServiceManager
} from '@jupyterlab/services';

/** The kernelspec the package installs. */
export const KERNEL_NAME = 'codex-exec';

/** A borrowed kernel connection; call `release` when done with it. */
export interface IKernelLease {
  kernel: Kernel.IKernelConnection;
  /** The kernel_info reply content (asked on the control channel). */
  info: KernelMessage.IInfoReply | null;
  release(): void;
}

/** Who lends kernel connections (the {@link KernelPool}). */
export interface IKernelLeaser {
  /** Borrow the connection to `kernelId`; rejects with {@link KernelGoneError} when it no longer runs. */
  acquire(kernelId: string): Promise<IKernelLease>;
}

/** A leaser that can also list the kernels (what the sidebar needs). */
export interface IKernelSource extends IKernelLeaser {
  listKernels(): Promise<Kernel.IModel[]>;
}

/** The kernel is no longer running on the server: nothing to reconnect to. */
export class KernelGoneError extends Error {
  constructor(readonly kernelId: string) {
    super(`The kernel ${kernelId} is no longer running.`);
    this.name = 'KernelGoneError';
  }
}

interface IEntry {
  kernel: Kernel.IKernelConnection;
  info: KernelMessage.IInfoReply | null;
  refs: number;
}

/** How long a connection is kept after its last lease (a new panel often follows). */
const LINGER_MS = 5000;

export class KernelPool implements IKernelSource {
  constructor(private _manager: ServiceManager.IManager) {}

  get serverSettings(): ServerConnection.ISettings {
    return this._manager.serverSettings;
  }

  /** Borrow the terminal connection to kernel `kernelId` (connecting on first use). */
  async acquire(kernelId: string): Promise<IKernelLease> {
    let pending = this._entries.get(kernelId);
    if (!pending) {
      pending = this._connect(kernelId);
      this._entries.set(kernelId, pending);
      pending.catch(() => {
        if (this._entries.get(kernelId) === pending) {
          this._entries.delete(kernelId);
        }
      });
    }
    const entry = await pending;
    if (entry.kernel.isDisposed) {
      if (this._entries.get(kernelId) === pending) {
        this._entries.delete(kernelId);
      }
      return this.acquire(kernelId);
    }
    entry.refs++;
    let released = false;
    return {
      kernel: entry.kernel,
      info: entry.info,
      release: () => {
        if (released) {
          return;
        }
        released = true;
        entry.refs--;
        if (entry.refs <= 0) {
          window.setTimeout(() => {
            if (entry.refs <= 0) {
              this._drop(kernelId, pending!, entry);
            }
          }, LINGER_MS);
        }
      }
    };
  }

  /**
   * The kernel a terminal from the launcher runs on: a running `codex-exec`
   * kernel that no notebook or console uses, else a new one. When the
   * `codex-exec` kernelspec is missing, the default kernel (the panel then
   * loads the extension into it).
   */
  async terminalKernel(): Promise<Kernel.IModel> {
    await this._manager.kernelspecs.ready;
    const specs = this._manager.kernelspecs.specs;
    const name = specs?.kernelspecs[KERNEL_NAME] ? KERNEL_NAME : (specs?.default ?? 'python3');
    const kernels = await KernelAPI.listRunning(this.serverSettings);
    let used: Set<string>;
    try {
      await this._manager.sessions.refreshRunning();
      used = new Set(Array.from(this._manager.sessions.running()).map(s => s.kernel?.id ?? ''));
    } catch {
      // Without the session list every kernel counts as used.
      used = new Set(kernels.map(k => k.id));
    }
    const free = kernels.find(k => k.name === name && !used.has(k.id));
    if (free) {
      return free;
    }
    return KernelAPI.startNew({ name }, this.serverSettings);
  }

  /** Every running kernel (for the sidebar's kernel chooser). */
  async listKernels(): Promise<Kernel.IModel[]> {
    return KernelAPI.listRunning(this.serverSettings);
  }

  private async _connect(kernelId: string): Promise<IEntry> {
    const model = await KernelAPI.getKernelModel(kernelId, this.serverSettings);
    if (!model) {
      throw new KernelGoneError(kernelId);
    }
    const kernel = new KernelConnection({
      model,
      serverSettings: this.serverSettings,
      handleComms: true,
      // We make one subshell for the whole connection (see the module docstring).
      commsOverSubshells: CommsOverSubshells.Disabled
    });
    (kernel as unknown as { _handleCommOpen: () => Promise<void> })._handleCommOpen = async () => {
      /* see the module docstring */
    };
    const entry: IEntry = { kernel, info: null, refs: 0 };
    try {
      await connected(kernel, 30000);
      entry.info = await controlRequest<KernelMessage.IInfoReply>(kernel, 'kernel_info_request', {}, 15000);
      if (entry.info?.supported_features?.includes('kernel subshells')) {
        const reply = await controlRequest<{ subshell_id: string; status: string }>(
          kernel,
          'create_subshell_request',
          {},
          15000
        );
        if (reply?.status === 'ok' && reply.subshell_id) {
          kernel.subshellId = reply.subshell_id;
        }
      }
    } catch (err) {
      // No answer on control: carry on over the main shell (a busy cell will
      // then hold the terminal up, but it still works when the cell ends).
      console.warn('codex-exec: no subshell for the terminal connection', err);
    }
    // A restart ends the kernel's subshells and processes: start afresh next time.
    kernel.statusChanged.connect((_, status) => {
      if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
        kernel.subshellId = null;
        const pending = this._entries.get(kernelId);
        if (pending) {
          void pending.then(e => {
            if (e === entry) {
              this._entries.delete(kernelId);
            }
          });
        }
      }
    });
    return entry;
  }

  private _drop(kernelId: string, pending: Promise<IEntry>, entry: IEntry): void {
    if (this._entries.get(kernelId) === pending) {
      this._entries.delete(kernelId);
    }
    const kernel = entry.kernel;
    if (kernel.isDisposed) {
      return;
    }
    const subshellId = kernel.subshellId;
    if (subshellId && kernel.status !== 'dead') {
      // KernelConnection.dispose() would ask through requestDeleteSubshell,
      // which refuses until the (shell) kernel_info reply came; ask ourselves.
      void controlRequest(kernel, 'delete_subshell_request', { subshell_id: subshellId }, 5000)
        .catch(() => undefined)
        .then(() => {
          kernel.subshellId = null;
          kernel.dispose();
        });
    } else {
      kernel.subshellId = null;
      kernel.dispose();
    }
  }

  private _entries = new Map<string, Promise<IEntry>>();
}

/** Wait until the websocket is up (messages sent before it would be queued). */
function connected(kernel: Kernel.IKernelConnection, timeoutMs: number): Promise<void> {
  if (kernel.connectionStatus === 'connected') {
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const timer = window.setTimeout(() => {
      kernel.connectionStatusChanged.disconnect(onChange);
      reject(new Error('the kernel websocket did not connect'));
    }, timeoutMs);
    const onChange = (_: Kernel.IKernelConnection, status: Kernel.ConnectionStatus) => {
      if (status === 'connected') {
        window.clearTimeout(timer);
        kernel.connectionStatusChanged.disconnect(onChange);
        resolve();
      }
    };
    kernel.connectionStatusChanged.connect(onChange);
  });
}

/** A request on the control channel; resolves with the reply's content. */
async function controlRequest<T>(
  kernel: Kernel.IKernelConnection,
  msgType: string,
  content: Record<string, unknown>,
  timeoutMs: number
): Promise<T> {
  // createMessage's overloads tie each message type to one channel; these
  // requests are valid on control too (JEP 91, and kernel_info everywhere).
  const create = KernelMessage.createMessage as unknown as (options: unknown) => KernelMessage.IControlMessage;
  const msg = create({ msgType, channel: 'control', username: kernel.username, session: kernel.clientId, content });
  const future = kernel.sendControlMessage(msg, true, true);
  let timer = 0;
  const timeout = new Promise<never>((_, reject) => {
    timer = window.setTimeout(() => reject(new Error(`${msgType}: no reply in ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const reply = await Promise.race([future.done, timeout]);
    return (reply as KernelMessage.IControlMessage).content as unknown as T;
  } finally {
    window.clearTimeout(timer);
  }
}

/**
 * The Kernel Terminal panel: an xterm.js terminal bound to one process of a
 * kernel's process table.
 *
 * The panel owns the page side of a terminal session: it starts (or attaches
 * to) a PTY process, feeds its output to xterm with flow control, sends
 * keystrokes in per-frame batches, keeps the PTY size in step with the panel,
 * and comes back to the same process after a lost connection or a reload.
 */
import { PageConfig } from '@jupyterlab/coreutils';
import { UUID } from '@lumino/coreutils';
import { Message } from '@lumino/messaging';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';
import { FitAddon } from '@xterm/addon-fit';
import { WebLinksAddon } from '@xterm/addon-web-links';
import { Terminal } from '@xterm/xterm';

import { ExecConnection, UnsupportedKernelError } from './connection';
import { CursorBlink } from './cursor';
import { IKernelLease, KernelPool } from './kernels';
import { IStartResult, RpcError, SignalName } from './protocol';
import { launcherStartDir } from './shellstart';
import { IStreamSink, ProcessStream } from './stream';
import { terminalTheme } from './theme';

/** User settings of the panel (see schema/plugin.json). */
export interface ITerminalSettings {
  fontSize: number;
  fontFamily: string;
  lineHeight: number;
  scrollback: number;
  cursorBlink: boolean;
  shell: string;
}

export const DEFAULT_SETTINGS: ITerminalSettings = {
  fontSize: 13,
  fontFamily: '',
  lineHeight: 1.0,
  scrollback: 5000,
  cursorBlink: true,
  shell: ''
};

/** What the layout restorer needs to bring a panel back. */
export interface IKernelTerminalState {
  kernelId: string;
  kernelName?: string;
  processId?: string;
  sessionId?: string;
}

export interface IKernelTerminalOptions extends IKernelTerminalState {
  pool: KernelPool;
  settings: ITerminalSettings;
  isLight: boolean;
  /**
   * The last seq the screen already shows. 0 (the default, and what a page
   * reload uses) replays every retained event, which repaints the screen.
   */
  afterSeq?: number;
  /** The launcher's directory (relative to the server's root) for the first shell. */
  launcherCwd?: string;
}

const CLIENT_NAME = 'jupyterlab-kernel-terminal';
const encoder = new TextEncoder();

export class KernelTerminal extends Widget {
  constructor(options: IKernelTerminalOptions) {
    super();
    this.addClass('jp-KernelTerminal');
    this.id = `codex-exec-terminal-${UUID.uuid4()}`;
    this.title.closable = true;
    this.title.label = 'Kernel Terminal';
    this.title.iconClass = 'jp-KernelTerminal-icon';
    this._pool = options.pool;
    this._state = {
      kernelId: options.kernelId,
      kernelName: options.kernelName,
      processId: options.processId,
      sessionId: options.sessionId
    };
    this._afterSeq = options.afterSeq ?? 0;
    this._launcherCwd = options.launcherCwd;
    this._settings = { ...options.settings };
    this._isLight = options.isLight;

    this._body = document.createElement('div');
    this._body.className = 'jp-KernelTerminal-body';
    this.node.appendChild(this._body);

    this._term = new Terminal({
      fontSize: this._settings.fontSize,
      fontFamily: this._fontFamily(),
      lineHeight: this._settings.lineHeight,
      scrollback: this._settings.scrollback,
      // Blinking is ours (see cursor.ts): xterm's CSS animation slows every echo.
      cursorBlink: false,
      theme: terminalTheme(this._isLight),
      allowProposedApi: false
    });
    this._fitAddon = new FitAddon();
    this._term.loadAddon(this._fitAddon);
    this._term.loadAddon(new WebLinksAddon());
    this._term.onData(data => this._input(encoder.encode(data)));
    this._term.onBinary(data => {
      const bytes = new Uint8Array(data.length);
      for (let i = 0; i < data.length; i++) {
        bytes[i] = data.charCodeAt(i) & 0xff;
      }
      this._input(bytes);
    });
    this._term.onTitleChange(title => {
      if (title) {
        this._processTitle = title;
        this._updateTitle();
      }
    });
    this._term.onResize(() => this._scheduleResize());
    this._term.attachCustomKeyEventHandler(event => this._keyFilter(event));
    this._cursorBlink = new CursorBlink(this.node);
    this._cursorBlink.enabled = this._settings.cursorBlink;
  }

  /** The xterm.js terminal (tests read its buffer). */
  get terminal(): Terminal {
    return this._term;
  }

  /** Resolves once the process runs and its output streams to the screen. */
  get ready(): Promise<void> {
    return this._ready.promise;
  }

  /** Where the panel is attached: kernel and process. */
  get state(): IKernelTerminalState {
    return { ...this._state };
  }

  /** Emitted when `state` changes (the restorer saves it). */
  get stateChanged(): ISignal<this, IKernelTerminalState> {
    return this._stateChanged;
  }

  get processId(): string | undefined {
    return this._state.processId;
  }

  get kernelId(): string {
    return this._state.kernelId;
  }

  /** The newest seq shown on screen. */
  get lastSeq(): number {
    return this._stream?.lastSeq ?? this._afterSeq;
  }

  /** The `initialize` environment (shell, hostname...) once connected. */
  get environment(): ExecConnection['initializeResult']['environment'] | null {
    return this._conn?.initializeResult?.environment ?? null;
  }

  /** Apply new settings from the registry. */
  updateSettings(settings: ITerminalSettings): void {
    this._settings = { ...settings };
    this._term.options.fontSize = settings.fontSize;
    this._term.options.fontFamily = this._fontFamily();
    this._term.options.lineHeight = settings.lineHeight;
    this._term.options.scrollback = settings.scrollback;
    this._cursorBlink.enabled = settings.cursorBlink;
    this._scheduleFit();
  }

  /** Follow the JupyterLab theme. */
  setTheme(isLight: boolean): void {
    this._isLight = isLight;
    // Read the CSS variables after the new theme's stylesheet applied.
    requestAnimationFrame(() => {
      this._term.options.theme = terminalTheme(isLight);
    });
  }

  /** Send a signal to the process group. */
  async signal(signal: SignalName): Promise<void> {
    if (this._conn && this._state.processId) {
      await this._conn.request('process/signal', { processId: this._state.processId, signal });
    }
  }

  /** End the process (SIGHUP+SIGTERM, then SIGKILL). */
  async terminate(): Promise<void> {
    if (this._conn && this._state.processId) {
      await this._conn.request('process/terminate', { processId: this._state.processId });
    }
  }

  /** Paste text as typed input. */
  paste(text: string): void {
    this._term.paste(text);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._stream?.dispose();
    this._conn?.dispose();
    this._lease?.release();
    this._cursorBlink.dispose();
    this._term.dispose();
    super.dispose();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (!this._opened) {
      this._opened = true;
      this._term.open(this._body);
      this._fitNow();
      void this._start();
    } else {
      this._scheduleFit();
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._scheduleFit();
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    this._scheduleFit();
  }

  protected onActivateRequest(msg: Message): void {
    super.onActivateRequest(msg);
    this._term.focus();
  }

  // ---- connecting ---------------------------------------------------------

  private async _start(): Promise<void> {
    this._status('Connecting to the kernel…');
    try {
      this._lease = await this._pool.acquire(this._state.kernelId);
      if (this.isDisposed) {
        return;
      }
      this._state.kernelName = this._state.kernelName ?? this._lease.kernel.name;
      await this._connect();
      this._clearStatus();
      if (this._state.sessionId && !this._state.processId) {
        const result = await this._conn!.request<{ processId: string }>('session/attach', {
          id: this._state.sessionId
        });
        this._setProcess(result.processId);
        await this._attach(0);
      } else if (this._state.processId) {
        await this._attach(this._afterSeq);
      } else {
        await this._startShell();
      }
      this._ready.resolve();
    } catch (err) {
      this._fail(err);
    }
  }

  private async _connect(): Promise<void> {
    this._conn?.dispose();
    const conn = await ExecConnection.open(this._lease!.kernel, {
      clientName: CLIENT_NAME,
      kernelInfo: this._lease!.info
    });
    if (this.isDisposed) {
      conn.dispose();
      return;
    }
    this._conn = conn;
    conn.ended.connect((_, info) => {
      if (this._conn !== conn || this.isDisposed) {
        return;
      }
      if (info.processesLost) {
        this._processGone(`${info.reason}: the process is gone.`);
      } else {
        void this._reconnect(info.reason);
      }
    });
    this._updateTitle();
  }

  /** Subscribe to `processId` after `afterSeq`. */
  private async _attach(afterSeq: number): Promise<void> {
    this._stream?.dispose();
    const stream = new ProcessStream(this._conn!, this._state.processId!, this._sink, afterSeq);
    this._stream = stream;
    try {
      await stream.subscribe();
    } catch (err) {
      if (err instanceof RpcError && err.code === -32600) {
        this._processGone(`The process ${this._state.processId} no longer exists on this kernel.`);
        return;
      }
      throw err;
    }
    this._sendResize(true);
    this._flushInput();
  }

  /** Start the user's login shell in a PTY the size of the panel. */
  private async _startShell(): Promise<void> {
    const env = this._conn!.initializeResult.environment ?? {};
    const shell = this._settings.shell || env.shell || '/bin/bash';
    const processId = `term-${UUID.uuid4().slice(0, 8)}`;
    this._stream?.dispose();
    // The stream exists before the start: the starter is subscribed from seq 1.
    this._stream = new ProcessStream(this._conn!, processId, this._sink, 0);
    this._exitShown = false;
    this._canRestart = false;
    this._shell = shell;
    const start = (cwd?: string) =>
      this._conn!.request<IStartResult>('process/start', {
        processId,
        argv: [shell, '-l'],
        tty: true,
        size: { rows: this._term.rows, cols: this._term.cols },
        title: 'Kernel Terminal',
        ...(cwd ? { cwd } : {})
      });
    const cwd = launcherStartDir(this._launcherCwd, PageConfig.getOption('serverRoot'), env.home);
    this._launcherCwd = undefined; // a restarted shell starts where the kernel is
    // A remote kernel (a gateway) may not have the server's directory: start anyway.
    await start(cwd).catch(err => (cwd ? start() : Promise.reject(err)));
    this._setProcess(processId);
    this._lastSize = `${this._term.rows}x${this._term.cols}`;
    this._flushInput();
  }

  private _setProcess(processId: string): void {
    this._state.processId = processId;
    this._updateTitle();
    this._stateChanged.emit(this.state);
  }

  /** The comm went away but the kernel lives: open a new one, pick up after lastSeq. */
  private async _reconnect(reason: string): Promise<void> {
    if (this._reconnecting) {
      return;
    }
    this._reconnecting = true;
    const afterSeq = this.lastSeq;
    this._status(`Connection lost (${reason}); reconnecting…`);
    try {
      for (let attempt = 0; !this.isDisposed; attempt++) {
        try {
          const kernel = this._lease!.kernel;
          if (kernel.isDisposed) {
            this._lease!.release();
            this._lease = await this._pool.acquire(this._state.kernelId);
          } else if (kernel.connectionStatus === 'disconnected') {
            await kernel.reconnect();
          }
          await this._connect();
          this._clearStatus();
          if (this._state.processId) {
            await this._attach(afterSeq);
          }
          return;
        } catch (err) {
          if (err instanceof Error && /no longer running/.test(err.message)) {
            this._processGone(err.message);
            return;
          }
          await new Promise(resolve => window.setTimeout(resolve, Math.min(30000, 500 * 2 ** attempt)));
        }
      }
    } finally {
      this._reconnecting = false;
    }
  }

  private _processGone(why: string): void {
    this._stream?.dispose();
    this._stream = null;
    this._term.write(`\r\n\x1b[2m[${why} Press Enter to start a new shell.]\x1b[0m\r\n`);
    this._canRestart = true;
    this._ready.resolve();
    this._updateTitle(true);
  }

  private _fail(err: unknown): void {
    const text = err instanceof UnsupportedKernelError || err instanceof Error ? err.message : String(err);
    console.error('codex-exec: Kernel Terminal failed', err);
    this._clearStatus();
    this._term.write(`\x1b[31m[Kernel Terminal: ${text}]\x1b[0m\r\n`);
    this.node.dataset.error = text;
    this._ready.reject(err);
    this._ready.promise.catch(() => undefined);
  }

  private async _restart(): Promise<void> {
    this._canRestart = false;
    this._state.processId = undefined;
    this._state.sessionId = undefined;
    try {
      if (!this._conn || this._conn.disconnect) {
        if (!this._lease || this._lease.kernel.isDisposed) {
          this._lease?.release();
          this._lease = await this._pool.acquire(this._state.kernelId);
        }
        await this._connect();
      }
      this._term.write('\r\n');
      await this._startShell();
    } catch (err) {
      this._fail(err);
    }
  }

  // ---- output -------------------------------------------------------------

  private _sink: IStreamSink = {
    write: (data, done) => {
      this._cursorBlink.reset(); // first: after typing, xterm parses within write()
      this._term.write(data, done);
    },
    exited: (exitCode, signal) => {
      this._exitShown = true;
      const how = signal ? `killed by ${signal}` : `exited with code ${exitCode}`;
      this._term.write(`\r\n\x1b[2m[process ${how}]\x1b[0m\r\n`);
      this._updateTitle(true);
    },
    closed: () => {
      if (!this._exitShown) {
        this._term.write('\r\n\x1b[2m[process ended]\x1b[0m\r\n');
      }
      this._term.write('\x1b[2m[Press Enter to start a new shell.]\x1b[0m\r\n');
      this._canRestart = true;
      this._updateTitle(true);
    },
    notice: text => this._term.write(`\r\n\x1b[2m${text}\x1b[0m\r\n`)
  };

  // ---- input --------------------------------------------------------------

  /** Keystrokes go out at once (see `_flushInput`). */
  private _input(bytes: Uint8Array): void {
    if (this._canRestart) {
      if (bytes.includes(13)) {
        void this._restart();
      }
      return;
    }
    this._inputQueue.push(bytes);
    this._flushInput();
  }

  /**
   * Send queued input as one `process/write` *notification*. No response comes
   * back, so a keystroke costs one message to the kernel, and its echo plus the
   * kernel's busy/idle status back: the fewest the protocol allows. The comm
   * keeps the order. A write the kernel refuses (the process just ended) needs
   * no answer either: the process's exit event tells the user. Input typed
   * before the shell runs waits in the queue until it does.
   */
  private _flushInput(): void {
    const processId = this._state.processId;
    if (!this._inputQueue.length || !this._conn || !processId || !this._stream || this._conn.disconnect) {
      return;
    }
    if (this._resizeTimer) {
      // Input typed after a resize must find the PTY at its new size.
      window.clearTimeout(this._resizeTimer);
      this._resizeTimer = 0;
      this._sendResize(false);
    }
    const total = this._inputQueue.reduce((n, b) => n + b.byteLength, 0);
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const chunk of this._inputQueue) {
      bytes.set(chunk, at);
      at += chunk.byteLength;
    }
    this._inputQueue = [];
    this._conn.notify('process/write', { processId, chunk: { buffer: 0 } }, [bytes]);
  }

  /** Let the browser copy (Ctrl+C with a selection) and paste (Ctrl+V). */
  private _keyFilter(event: KeyboardEvent): boolean {
    if (event.type !== 'keydown') {
      return true;
    }
    const mac = navigator.platform.toUpperCase().includes('MAC');
    if (mac) {
      return true;
    }
    if (event.ctrlKey && !event.altKey && (event.key === 'c' || event.key === 'C') && this._term.hasSelection()) {
      return false;
    }
    if (event.ctrlKey && !event.altKey && (event.key === 'v' || event.key === 'V')) {
      return false;
    }
    return true;
  }

  // ---- size ---------------------------------------------------------------

  private _scheduleFit(): void {
    if (this._fitRaf) {
      return;
    }
    this._fitRaf = requestAnimationFrame(() => {
      this._fitRaf = 0;
      this._fitNow();
    });
  }

  private _fitNow(): void {
    if (!this._opened || !this.isVisible || this._body.clientWidth === 0 || this._body.clientHeight === 0) {
      return;
    }
    try {
      this._fitAddon.fit();
    } catch {
      // The renderer may not have measured its cell yet; the next resize will fit.
    }
  }

  private _scheduleResize(): void {
    window.clearTimeout(this._resizeTimer);
    this._resizeTimer = window.setTimeout(() => this._sendResize(false), 30);
  }

  private _sendResize(force: boolean): void {
    this._resizeTimer = 0;
    const processId = this._state.processId;
    if (!this._conn || !processId || this._conn.disconnect || this._canRestart) {
      return;
    }
    const size = `${this._term.rows}x${this._term.cols}`;
    if (!force && size === this._lastSize) {
      return;
    }
    this._lastSize = size;
    this._conn
      .request('process/resize', { processId, rows: this._term.rows, cols: this._term.cols })
      .catch(err => {
        // Not a tty (an attached pipe process) or gone: nothing to resize.
        if (!(err instanceof RpcError)) {
          console.warn('codex-exec: resize failed', err);
        }
      });
  }

  // ---- title & status -----------------------------------------------------

  private _updateTitle(ended = false): void {
    const env = this.environment;
    const host = env?.hostname ? ` @ ${env.hostname}` : '';
    const base = this._processTitle || (this._shell ? this._shell.split('/').pop()! + host : 'Kernel Terminal');
    const finished = ended || this._canRestart;
    this.title.label = finished ? `${base} [ended]` : base;
    const parts = [`Kernel Terminal on kernel ${this._state.kernelName ?? ''} (${this._state.kernelId.slice(0, 8)})`];
    if (this._state.processId) {
      parts.push(`process ${this._state.processId}`);
    }
    if (this._state.sessionId) {
      parts.push(`session ${this._state.sessionId}`);
    }
    this.title.caption = parts.join(', ');
    this.node.dataset.processId = this._state.processId ?? '';
  }

  private _status(text: string): void {
    this.node.dataset.status = text;
    this._statusShown = true;
    this._term.write(`\x1b[2m${text}\x1b[0m\r\n`);
  }

  private _clearStatus(): void {
    if (this._statusShown) {
      this._statusShown = false;
      delete this.node.dataset.status;
      // Erase the status line so the shell's prompt starts on a clean screen.
      this._term.write('\x1b[1A\x1b[2K\r');
    }
  }

  private _fontFamily(): string {
    if (this._settings.fontFamily) {
      return this._settings.fontFamily;
    }
    const jp = getComputedStyle(document.body).getPropertyValue('--jp-code-font-family').trim();
    return jp || 'monospace';
  }

  private _pool: KernelPool;
  private _lease: IKernelLease | null = null;
  private _conn: ExecConnection | null = null;
  private _stream: ProcessStream | null = null;
  private _state: IKernelTerminalState;
  private _stateChanged = new Signal<this, IKernelTerminalState>(this);
  private _afterSeq: number;
  private _launcherCwd: string | undefined;
  private _settings: ITerminalSettings;
  private _isLight: boolean;
  private _body: HTMLDivElement;
  private _term: Terminal;
  private _fitAddon: FitAddon;
  private _cursorBlink: CursorBlink;
  private _opened = false;
  private _ready = new PromiseDelegateLite();
  private _inputQueue: Uint8Array[] = [];
  private _fitRaf = 0;
  private _resizeTimer = 0;
  private _lastSize = '';
  private _reconnecting = false;
  private _canRestart = false;
  private _exitShown = false;
  private _statusShown = false;
  private _shell = '';
  private _processTitle = '';
}

/** A settle-once promise (resolving twice is harmless). */
class PromiseDelegateLite {
  readonly promise: Promise<void>;
  constructor() {
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
  resolve: () => void = () => undefined;
  reject: (err: unknown) => void = () => undefined;
}

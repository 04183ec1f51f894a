/**
 * The Kernel Terminal panel: an xterm.js terminal bound to one process of a
 * kernel's process table.
 *
 * The panel is the widget, its title and its status lines: it starts (or
 * attaches to) a PTY process, says when the connection is lost or the process
 * ended, and starts a new shell on Enter. The process stream itself (input,
 * output with flow control, size) is the {@link ProcessTerminalAddon}; the
 * kernel, its connection and getting it back are the {@link KernelLink}.
 */
import { PageConfig } from '@jupyterlab/coreutils';
import { PromiseDelegate, UUID } from '@lumino/coreutils';
import { Message } from '@lumino/messaging';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';
import { FitAddon } from '@xterm/addon-fit';
import { WebLinksAddon } from '@xterm/addon-web-links';
import { Terminal } from '@xterm/xterm';

import { ProcessTerminalAddon } from './addon';
import { ExecConnection, IDisconnect } from './connection';
import { CursorBlink } from './cursor';
import { IKernelLeaser, KernelGoneError } from './kernels';
import { KernelLink } from './link';
import { ErrorCode, IStartResult, RpcError, SignalName } from './protocol';
import { launcherStartDir } from './shellstart';
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
  pool: IKernelLeaser;
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

export class KernelTerminal extends Widget {
  constructor(options: IKernelTerminalOptions) {
    super();
    this.addClass('jp-KernelTerminal');
    this.id = `codex-exec-terminal-${UUID.uuid4()}`;
    this.title.closable = true;
    this.title.label = 'Kernel Terminal';
    this.title.iconClass = 'jp-KernelTerminal-icon';
    this._link = new KernelLink({
      pool: options.pool,
      kernelId: options.kernelId,
      clientName: CLIENT_NAME,
      reconnect: true
    });
    this._link.lost.connect(this._onLost, this);
    this._link.reconnected.connect(this._onReconnected, this);
    this._link.gone.connect((_, err) => this._processGone(err.message));
    // A failed start is shown in the panel; awaiting `ready` still rejects.
    this._ready.promise.catch(() => undefined);
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
    this._process = new ProcessTerminalAddon({
      beforeWrite: () => this._cursorBlink.reset(),
      exited: (exitCode, signal) => this._exited(exitCode, signal),
      closed: () => this._closed(),
      endedInput: bytes => {
        if (bytes.includes(13)) {
          void this._restart();
        }
      }
    });
    this._term.loadAddon(this._process);
    this._term.onTitleChange(title => {
      if (title) {
        this._processTitle = title;
        this._updateTitle();
      }
    });
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
    return this._process.stream?.lastSeq ?? this._afterSeq;
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
    this._process.dispose();
    this._link.dispose();
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

  /** The kernel connection (browser tests reach it through the panel). */
  private get _conn(): ExecConnection | null {
    return this._link.connection;
  }

  private async _start(): Promise<void> {
    this._status('Connecting to the kernel…');
    try {
      const conn = await this._link.connect();
      if (this.isDisposed) {
        return;
      }
      this._state.kernelName = this._state.kernelName ?? this._link.lease?.kernel.name;
      this._updateTitle();
      this._clearStatus();
      if (this._state.sessionId && !this._state.processId) {
        const result = await conn.request<{ processId: string }>('session/attach', { id: this._state.sessionId });
        this._setProcess(result.processId);
        await this._attach(conn, 0);
      } else if (this._state.processId) {
        await this._attach(conn, this._afterSeq);
      } else {
        await this._startShell(conn);
      }
      this._ready.resolve();
    } catch (err) {
      this._fail(err);
    }
  }

  /**
   * Subscribe to the panel's process after `afterSeq`; with 0 (a fresh
   * screen: a reload, a second viewer, an attached session) start from the
   * kernel's snapshot of its screen (see snapshot.ts).
   */
  private async _attach(conn: ExecConnection, afterSeq: number): Promise<void> {
    const processId = this._state.processId!;
    try {
      if (afterSeq === 0) {
        await this._process.subscribeFromScreen(conn, processId);
      } else {
        await this._process.bind(conn, processId, afterSeq).subscribe();
      }
    } catch (err) {
      if (err instanceof RpcError && err.code === ErrorCode.invalidRequest) {
        this._processGone(`The process ${this._state.processId} no longer exists on this kernel.`);
        return;
      }
      throw err;
    }
    this._process.live();
  }

  /** Start the user's login shell in a PTY the size of the panel. */
  private async _startShell(conn: ExecConnection): Promise<void> {
    const env = conn.initializeResult.environment ?? {};
    const shell = this._settings.shell || env.shell || '/bin/bash';
    const processId = `term-${UUID.uuid4().slice(0, 8)}`;
    // Bound before the start: the starter is subscribed from seq 1.
    this._process.bind(conn, processId, 0);
    this._exitShown = false;
    this._shell = shell;
    const size = { rows: this._term.rows, cols: this._term.cols };
    const start = (cwd?: string) =>
      conn.request<IStartResult>('process/start', {
        processId,
        argv: [shell, '-l'],
        tty: true,
        size: { ...size },
        title: 'Kernel Terminal',
        ...(cwd ? { cwd } : {})
      });
    const cwd = launcherStartDir(this._launcherCwd, PageConfig.getOption('serverRoot'), env.home);
    this._launcherCwd = undefined; // a restarted shell starts where the kernel is
    // A remote kernel (a gateway) may not have the server's directory: start anyway.
    await start(cwd).catch(err => (cwd ? start() : Promise.reject(err)));
    this._setProcess(processId);
    this._process.live(size);
  }

  private _setProcess(processId: string): void {
    this._state.processId = processId;
    this._updateTitle();
    this._stateChanged.emit(this.state);
  }

  /** The connection ended: the process is gone with the kernel, or the link reconnects. */
  private _onLost(_: KernelLink, info: IDisconnect): void {
    if (this.isDisposed) {
      return;
    }
    if (info.processesLost) {
      this._processGone(`${info.reason}: the process is gone.`);
    } else {
      this._status(`Connection lost (${info.reason}); reconnecting…`);
    }
  }

  /** A new comm after a lost one: pick the process up after the last seq shown. */
  private async _onReconnected(_: KernelLink, conn: ExecConnection): Promise<void> {
    this._clearStatus();
    this._updateTitle();
    if (!this._state.processId || this._process.isEnded) {
      return;
    }
    try {
      await this._attach(conn, this.lastSeq);
    } catch (err) {
      if (!conn.disconnect) {
        // A lost connection is the link's to retry; anything else is news.
        this._fail(err);
      }
    }
  }

  private _processGone(why: string): void {
    this._process.end();
    this._term.write(`\r\n\x1b[2m[${why} Press Enter to start a new shell.]\x1b[0m\r\n`);
    this._ready.resolve();
    this._updateTitle(true);
  }

  private _fail(err: unknown): void {
    if (this.isDisposed) {
      return; // closed while connecting: nothing to say
    }
    const text = err instanceof Error ? err.message : String(err);
    console.error('codex-exec: Kernel Terminal failed', err);
    this._clearStatus();
    this._term.write(`\x1b[31m[Kernel Terminal: ${text}]\x1b[0m\r\n`);
    this.node.dataset.error = text;
    this._ready.reject(err);
  }

  private async _restart(): Promise<void> {
    this._process.unbind();
    this._state.processId = undefined;
    this._state.sessionId = undefined;
    try {
      const conn = await this._link.connect();
      this._term.write('\r\n');
      await this._startShell(conn);
    } catch (err) {
      if (err instanceof KernelGoneError) {
        this._processGone(err.message);
      } else {
        this._fail(err);
      }
    }
  }

  // ---- what the process does ----------------------------------------------

  private _exited(exitCode: number | null, signal: string | null): void {
    this._exitShown = true;
    const how = signal ? `killed by ${signal}` : `exited with code ${exitCode}`;
    this._term.write(`\r\n\x1b[2m[process ${how}]\x1b[0m\r\n`);
    this._updateTitle(true);
  }

  private _closed(): void {
    if (!this._exitShown) {
      this._term.write('\r\n\x1b[2m[process ended]\x1b[0m\r\n');
    }
    this._term.write('\x1b[2m[Press Enter to start a new shell.]\x1b[0m\r\n');
    this._updateTitle(true);
  }

  // ---- input --------------------------------------------------------------

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

  // ---- title & status -----------------------------------------------------

  private _updateTitle(ended = false): void {
    const env = this.environment;
    const host = env?.hostname ? ` @ ${env.hostname}` : '';
    const base = this._processTitle || (this._shell ? this._shell.split('/').pop()! + host : 'Kernel Terminal');
    const finished = ended || this._process.isEnded;
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
    this._clearStatus(); // one status line at a time
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

  private _link: KernelLink;
  private _process: ProcessTerminalAddon;
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
  private _ready = new PromiseDelegate<void>();
  private _fitRaf = 0;
  private _exitShown = false;
  private _statusShown = false;
  private _shell = '';
  private _processTitle = '';
}

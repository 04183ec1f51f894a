/**
 * The "Kernel Processes" sidebar: what runs in a kernel's process table and
 * which background sessions exist, with attach, signal, terminate and delete.
 *
 * Plain DOM rather than React: a table refreshed every few seconds needs no
 * framework, and the extension stays a small bundle.
 */
import { Kernel } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { IKernelSource, KERNEL_NAME } from './kernels';
import { KernelLink } from './link';
import { IProcessInfo, ISessionInfo, SignalName } from './protocol';

/** What the sidebar asks of the application (open panels). */
export interface ISidebarHost {
  openProcess(kernelId: string, processId: string): void;
  openSession(kernelId: string, sessionId: string): void;
  newTerminal(kernelId: string): void;
  /** The kernel of the current notebook or terminal, if any. */
  currentKernelId(): string | null;
}

const SIGNALS: SignalName[] = ['interrupt', 'terminate', 'kill', 'hangup', 'quit', 'stop', 'continue', 'usr1', 'usr2', 'winch'];
const POLL_MS = 3000;
const REQUEST_TIMEOUT_MS = 15000;
const CLIENT_NAME = 'jupyterlab-kernel-processes';

export class SessionsSidebar extends Widget {
  constructor(
    private _pool: IKernelSource,
    private _host: ISidebarHost
  ) {
    super();
    this.id = 'codex-exec-sessions';
    this.addClass('jp-KernelProcesses');
    this.title.caption = 'Kernel Processes';
    this.node.innerHTML = `
      <div class="jp-KernelProcesses-header">
        <h2>Kernel Processes</h2>
        <div class="jp-KernelProcesses-controls">
          <select class="jp-KernelProcesses-kernel jp-mod-styled" title="Kernel"></select>
          <button class="jp-KernelProcesses-refresh jp-mod-styled" title="Refresh">⟳</button>
          <button class="jp-KernelProcesses-new jp-mod-styled" title="New Kernel Terminal on this kernel">+</button>
        </div>
        <div class="jp-KernelProcesses-message"></div>
      </div>
      <h3>Processes</h3>
      <div class="jp-KernelProcesses-list jp-KernelProcesses-processes"></div>
      <h3>Background sessions</h3>
      <div class="jp-KernelProcesses-list jp-KernelProcesses-sessions"></div>`;
    this._select = this.node.querySelector('select')!;
    this._message = this.node.querySelector('.jp-KernelProcesses-message')!;
    this._processBody = this.node.querySelector('.jp-KernelProcesses-processes')!;
    this._sessionBody = this.node.querySelector('.jp-KernelProcesses-sessions')!;
    this._select.addEventListener('change', () => void this._selectKernel(this._select.value));
    this.node.querySelector('.jp-KernelProcesses-refresh')!.addEventListener('click', () => void this.refresh(true));
    this.node.querySelector('.jp-KernelProcesses-new')!.addEventListener('click', () => {
      if (this._link) {
        this._host.newTerminal(this._link.kernelId);
      }
    });
  }

  /** The kernel being shown. */
  get kernelId(): string | null {
    return this._link?.kernelId ?? null;
  }

  /** Show `kernelId` (or the current/first suitable kernel) and refresh. */
  async refresh(reloadKernels = false): Promise<void> {
    if (reloadKernels || this._kernels.length === 0) {
      await this._loadKernels();
    }
    if (!this._link) {
      const current = this._host.currentKernelId();
      const pick =
        this._kernels.find(k => k.id === current) ??
        this._kernels.find(k => k.name === KERNEL_NAME) ??
        this._kernels[0];
      if (pick) {
        await this._selectKernel(pick.id);
        return;
      }
    }
    await this._refreshTables();
  }

  /** Switch to the kernel `kernelId`. */
  async showKernel(kernelId: string): Promise<void> {
    await this._loadKernels();
    await this._selectKernel(kernelId);
  }

  dispose(): void {
    window.clearInterval(this._timer);
    this._showLink(null);
    super.dispose();
  }

  protected onAfterShow(): void {
    void this.refresh(true);
    window.clearInterval(this._timer);
    this._timer = window.setInterval(() => void this.refresh(), POLL_MS);
  }

  protected onAfterHide(): void {
    window.clearInterval(this._timer);
    this._timer = 0;
  }

  private async _loadKernels(): Promise<void> {
    try {
      this._kernels = await this._pool.listKernels();
    } catch (err) {
      this._setMessage(`Cannot list kernels: ${err}`);
      return;
    }
    const chosen = this._link?.kernelId;
    this._select.textContent = '';
    for (const k of this._kernels) {
      const option = document.createElement('option');
      option.value = k.id;
      option.textContent = `${k.name} (${k.id.slice(0, 8)})`;
      this._select.appendChild(option);
    }
    if (chosen && !this._kernels.some(k => k.id === chosen)) {
      this._showLink(null);
    }
    if (this._link) {
      this._select.value = this._link.kernelId;
    }
    if (this._kernels.length === 0) {
      this._setMessage('No running kernel.');
      this._processBody.textContent = '';
      this._sessionBody.textContent = '';
    }
  }

  private async _selectKernel(kernelId: string): Promise<void> {
    if (kernelId !== this._link?.kernelId) {
      // The sidebar never loads the extension itself: listing must not run
      // code in someone's notebook kernel.
      this._showLink(
        new KernelLink({ pool: this._pool, kernelId, clientName: CLIENT_NAME, loadExtension: false })
      );
      this._select.value = kernelId;
    }
    await this._refreshTables();
  }

  /** Show the kernel of `link`; the previous link closes (and with it any connect in flight). */
  private _showLink(link: KernelLink | null): void {
    this._link?.dispose();
    this._link = link;
  }

  private async _refreshTables(): Promise<void> {
    const link = this._link;
    if (!link || this._refreshing === link) {
      return;
    }
    this._refreshing = link;
    try {
      const conn = await link.connect();
      const [processes, sessions] = await Promise.all([
        conn.request<{ processes: IProcessInfo[] }>('process/list', {}, undefined, REQUEST_TIMEOUT_MS),
        conn
          .request<{ sessions: ISessionInfo[] }>('session/list', {}, undefined, REQUEST_TIMEOUT_MS)
          .catch(() => ({ sessions: [] as ISessionInfo[] }))
      ]);
      if (link !== this._link) {
        return; // another kernel is shown meanwhile
      }
      this._setMessage(`${conn.initializeResult.environment?.hostname ?? ''}`);
      this._renderProcesses(link, processes.processes);
      this._renderSessions(link, sessions.sessions);
    } catch (err) {
      if (link !== this._link) {
        return;
      }
      this._setMessage(
        `This kernel does not serve Kernel Processes (${err instanceof Error ? err.message : err}). ` +
          'Open a Kernel Terminal on it to load the extension.'
      );
      this._processBody.textContent = '';
      this._sessionBody.textContent = '';
    } finally {
      if (this._refreshing === link) {
        this._refreshing = null;
      }
    }
  }

  private _renderProcesses(link: KernelLink, processes: IProcessInfo[]): void {
    const kernelId = link.kernelId;
    this._processBody.textContent = '';
    if (processes.length === 0) {
      this._processBody.appendChild(emptyRow('No processes.'));
    }
    for (const p of processes) {
      const status = p.exited || p.closed ? ended(p.exitCode, p.signal) : 'running';
      const row = this._row(
        p.processId,
        status,
        [p.argv.join(' '), `pid ${p.pid}`, age(p.startedAt)],
        p.title ? `${p.title}: ${p.argv.join(' ')}` : p.argv.join(' ')
      );
      row.dataset.processId = p.processId;
      const actions = row.querySelector('.jp-KernelProcesses-actions')!;
      actions.appendChild(button('Open', 'Open in a Kernel Terminal panel', () => this._host.openProcess(kernelId, p.processId)));
      actions.appendChild(
        signalSelect(signal => void this._call(link, 'process/signal', { processId: p.processId, signal }))
      );
      actions.appendChild(
        button('Terminate', 'SIGHUP + SIGTERM, then SIGKILL', () =>
          void this._call(link, 'process/terminate', { processId: p.processId })
        )
      );
      this._processBody.appendChild(row);
    }
  }

  private _renderSessions(link: KernelLink, sessions: ISessionInfo[]): void {
    const kernelId = link.kernelId;
    this._sessionBody.textContent = '';
    if (sessions.length === 0) {
      this._sessionBody.appendChild(emptyRow('No background sessions.'));
    }
    for (const s of sessions) {
      const status = s.status === 'exited' ? ended(s.exitCode, s.signal) : s.status;
      const row = this._row(
        s.id,
        status,
        [s.display || s.argv.join(' '), s.pid ? `pid ${s.pid}` : '', age(s.createdAt)],
        s.argv.join(' ')
      );
      row.dataset.sessionId = s.id;
      const actions = row.querySelector('.jp-KernelProcesses-actions')!;
      actions.appendChild(button('Attach', 'Open this session in a panel', () => this._host.openSession(kernelId, s.id)));
      if (s.status === 'running') {
        actions.appendChild(signalSelect(signal => void this._call(link, 'session/signal', { id: s.id, signal })));
      }
      actions.appendChild(
        button('Delete', 'End the session if running and remove its log', () => {
          if (window.confirm(`Delete background session "${s.id}" and its log?`)) {
            void this._call(link, 'session/delete', { id: s.id });
          }
        })
      );
      this._sessionBody.appendChild(row);
    }
  }

  private _row(name: string, status: string, cells: string[], title: string): HTMLDivElement {
    const row = document.createElement('div');
    row.className = 'jp-KernelProcesses-row';
    const head = document.createElement('div');
    head.className = 'jp-KernelProcesses-head';
    const label = document.createElement('span');
    label.className = 'jp-KernelProcesses-name';
    label.textContent = name;
    const badge = document.createElement('span');
    badge.className = `jp-KernelProcesses-status jp-mod-${status.split(' ')[0]}`;
    badge.textContent = status;
    head.append(label, badge);
    const info = document.createElement('div');
    info.className = 'jp-KernelProcesses-info';
    info.textContent = cells.filter(Boolean).join(' · ');
    info.title = title;
    const actions = document.createElement('div');
    actions.className = 'jp-KernelProcesses-actions';
    row.append(head, info, actions);
    return row;
  }

  /** A row's action, on the kernel the row came from. */
  private async _call(link: KernelLink, method: string, params: Record<string, string>): Promise<void> {
    try {
      const conn = await link.connect();
      await conn.request(method, params, undefined, REQUEST_TIMEOUT_MS);
    } catch (err) {
      if (link === this._link) {
        this._setMessage(`${method} failed: ${err instanceof Error ? err.message : err}`);
      }
    }
    await this._refreshTables();
  }

  private _setMessage(text: string): void {
    this._message.textContent = text;
  }

  private _select: HTMLSelectElement;
  private _message: HTMLElement;
  private _processBody: HTMLElement;
  private _sessionBody: HTMLElement;
  private _kernels: Kernel.IModel[] = [];
  /** The kernel shown; its rows' actions go to it. */
  private _link: KernelLink | null = null;
  /** The link a refresh is running for (one at a time per kernel). */
  private _refreshing: KernelLink | null = null;
  private _timer = 0;
}

function button(label: string, title: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.className = 'jp-mod-styled jp-KernelProcesses-button';
  b.textContent = label;
  b.title = title;
  b.dataset.action = label.toLowerCase();
  b.addEventListener('click', onClick);
  return b;
}

/** How an ended process is shown: "exited (2)" or "killed (SIGTERM)". */
function ended(exitCode: number | null, signal?: string | null): string {
  return signal ? `killed (${signal})` : `exited (${exitCode ?? '?'})`;
}

function signalSelect(send: (signal: SignalName) => void): HTMLSelectElement {
  const select = document.createElement('select');
  select.className = 'jp-mod-styled jp-KernelProcesses-signal';
  select.title = 'Send a signal';
  const first = document.createElement('option');
  first.value = '';
  first.textContent = 'Signal…';
  select.appendChild(first);
  for (const name of SIGNALS) {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = name;
    select.appendChild(option);
  }
  select.addEventListener('change', () => {
    if (select.value) {
      send(select.value as SignalName);
      select.value = '';
    }
  });
  return select;
}

function emptyRow(text: string): HTMLDivElement {
  const row = document.createElement('div');
  row.className = 'jp-KernelProcesses-empty';
  row.textContent = text;
  return row;
}

/** "3 s", "5 min", "2 h", "4 d" since an ISO time. */
export function age(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (!isFinite(seconds)) {
    return '';
  }
  if (seconds < 60) {
    return `${Math.floor(seconds)} s`;
  }
  if (seconds < 3600) {
    return `${Math.floor(seconds / 60)} min`;
  }
  if (seconds < 86400) {
    return `${Math.floor(seconds / 3600)} h`;
  }
  return `${Math.floor(seconds / 86400)} d`;
}

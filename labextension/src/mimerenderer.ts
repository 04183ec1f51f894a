/**
 * Renderer for `application/vnd.codex-exec.terminal+json`, the bundle the
 * `%terminal` magic displays: a button that opens a Kernel Terminal on the
 * notebook's kernel, pressed once automatically when the output is new.
 *
 * Why a mime bundle and not a comm: it needs nothing from the kernel at
 * render time, survives in the saved notebook as a plain button, and works on
 * any frontend that falls back to the bundle's `text/plain`.
 */
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

export const TERMINAL_MIME = 'application/vnd.codex-exec.terminal+json';

/** The payload of the mime bundle (see docs/terminal-panel.md). */
export interface ITerminalRequest {
  processId?: string;
  sessionId?: string;
  kernelId?: string;
  requestId?: string;
  autoOpen?: boolean;
  createdAt?: string;
  label?: string;
}

/** Opens a panel for a request; `node` locates the notebook it came from. */
export type RequestOpener = (request: ITerminalRequest, node: HTMLElement) => Promise<void>;

const SEEN_KEY = 'codex-exec:terminal-requests';
/** Outputs older than this (by `createdAt`) never open a panel by themselves. */
const AUTO_OPEN_MAX_AGE_MS = 5 * 60 * 1000;

function alreadySeen(requestId: string): boolean {
  let seen: string[] = [];
  try {
    seen = JSON.parse(window.localStorage.getItem(SEEN_KEY) ?? '[]');
  } catch {
    seen = [];
  }
  if (seen.includes(requestId)) {
    return true;
  }
  seen.push(requestId);
  try {
    window.localStorage.setItem(SEEN_KEY, JSON.stringify(seen.slice(-200)));
  } catch {
    // Storage full or disabled: the button still works.
  }
  return false;
}

/** Whether a request should open a panel without a click. */
export function shouldAutoOpen(request: ITerminalRequest): boolean {
  if (request.autoOpen === false || !request.requestId) {
    return false;
  }
  if (request.createdAt) {
    const created = Date.parse(request.createdAt);
    if (isFinite(created) && Date.now() - created > AUTO_OPEN_MAX_AGE_MS) {
      return false;
    }
  }
  return !alreadySeen(request.requestId);
}

export class TerminalRequestRenderer extends Widget implements IRenderMime.IRenderer {
  constructor(private _open: RequestOpener) {
    super();
    this.addClass('jp-KernelTerminalRequest');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const request = (model.data[TERMINAL_MIME] ?? {}) as ITerminalRequest;
    this.node.textContent = '';
    const button = document.createElement('button');
    button.className = 'jp-mod-styled jp-mod-accept jp-KernelTerminalRequest-button';
    button.textContent = request.label ?? 'Open Kernel Terminal';
    const what = request.sessionId
      ? `background session ${request.sessionId}`
      : request.processId
        ? `process ${request.processId}`
        : 'a new shell';
    button.title = `Open a Kernel Terminal panel on this notebook's kernel (${what})`;
    button.addEventListener('click', () => void this._open(request, this.node));
    this.node.appendChild(button);
    if (shouldAutoOpen(request)) {
      void this._whenAttached().then(() => this._open(request, this.node));
    }
  }

  /** The notebook is found through the DOM, so wait until the output is in it. */
  private async _whenAttached(): Promise<void> {
    for (let i = 0; i < 100 && !this.node.isConnected; i++) {
      await new Promise(resolve => window.setTimeout(resolve, 50));
    }
  }
}

export function rendererFactory(open: RequestOpener): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [TERMINAL_MIME],
    defaultRank: 0,
    createRenderer: () => new TerminalRequestRenderer(open)
  };
}

/**
 * JupyterLab plugins of the Kernel Terminal: commands, launcher and palette
 * items, the notebook toolbar button and context menu, layout restore,
 * settings, the `%terminal` mime renderer and the Kernel Processes sidebar.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, IThemeManager, ToolbarButton, WidgetTracker } from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { ILauncher } from '@jupyterlab/launcher';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { DisposableDelegate } from '@lumino/disposable';
import { Widget } from '@lumino/widgets';

import { KernelPool } from './kernels';
import { ITerminalRequest, rendererFactory } from './mimerenderer';
import { SessionsSidebar } from './sidebar';
import { DEFAULT_SETTINGS, ITerminalSettings, KernelTerminal } from './terminal';

import '../style/index.css';

const PLUGIN_ID = 'codex-exec-kernel:plugin';

export namespace CommandIDs {
  export const open = 'codex-exec:open-terminal';
  export const openForNotebook = 'codex-exec:open-terminal-for-kernel';
  export const interrupt = 'codex-exec:interrupt';
  export const terminate = 'codex-exec:terminate';
  export const copy = 'codex-exec:copy';
  export const paste = 'codex-exec:paste';
  export const showSessions = 'codex-exec:show-processes';
  export const increaseFont = 'codex-exec:increase-font-size';
  export const decreaseFont = 'codex-exec:decrease-font-size';
}

export const terminalIcon = new LabIcon({
  name: 'codex-exec-kernel:terminal',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><g class="jp-icon3" fill="#616161">' +
    '<path d="M3 4h18a1 1 0 0 1 1 1v14a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1zm1 2v12h16V6H4zm2.3 2.3 3.7 3.7-3.7 3.7-1.4-1.4 2.3-2.3-2.3-2.3 1.4-1.4zM11 15h6v2h-6v-2z"/>' +
    '<circle cx="19" cy="7.5" r="1.2"/></g></svg>'
});

/** A notebook or console: anything with a session context. */
interface IKernelWidget extends Widget {
  sessionContext: { session: { kernel: { id: string; name: string } | null } | null; ready: Promise<void> };
}

function isKernelWidget(w: unknown): w is IKernelWidget {
  return !!w && typeof w === 'object' && 'sessionContext' in w && !!(w as IKernelWidget).sessionContext;
}

/** The notebook/console that holds `node` (an output in it). */
function kernelWidgetOf(app: JupyterFrontEnd, node: HTMLElement): IKernelWidget | null {
  for (const w of app.shell.widgets('main')) {
    if (isKernelWidget(w) && w.node.contains(node)) {
      return w;
    }
  }
  return null;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Kernel Terminal: a terminal whose shell runs where the kernel runs.',
  autoStart: true,
  optional: [ILauncher, ICommandPalette, ILayoutRestorer, ISettingRegistry, IThemeManager, IRenderMimeRegistry, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    themeManager: IThemeManager | null,
    rendermime: IRenderMimeRegistry | null,
    labShell: ILabShell | null
  ) => {
    const pool = new KernelPool(app.serviceManager);
    const tracker = new WidgetTracker<KernelTerminal>({ namespace: 'codex-exec-terminal' });
    let settings: ITerminalSettings = { ...DEFAULT_SETTINGS };
    const isLight = () => (themeManager?.theme ? themeManager.isLight(themeManager.theme) : true);

    /** Create, add and activate a panel. */
    const openPanel = async (args: ReadonlyPartialJSONObject): Promise<KernelTerminal> => {
      let kernelId = args.kernelId as string | undefined;
      let kernelName = args.kernelName as string | undefined;
      if (!kernelId) {
        const model = await pool.terminalKernel();
        kernelId = model.id;
        kernelName = model.name;
      }
      const widget = new KernelTerminal({
        pool,
        kernelId,
        kernelName,
        processId: args.processId as string | undefined,
        sessionId: args.sessionId as string | undefined,
        afterSeq: 0,
        launcherCwd: typeof args.cwd === 'string' ? args.cwd : undefined,
        settings,
        isLight: isLight()
      });
      if (typeof args.id === 'string' && args.id && !document.getElementById(args.id)) {
        // Keep the restorer's key stable across reloads (see restorer below).
        widget.id = args.id;
      }
      widget.title.icon = terminalIcon;
      widget.stateChanged.connect(() => void tracker.save(widget));
      const ref = typeof args.ref === 'string' ? args.ref : undefined;
      app.shell.add(widget, 'main', ref ? { mode: 'split-bottom', ref } : { mode: 'tab-after' });
      void tracker.add(widget);
      if (args.activate !== false) {
        app.shell.activateById(widget.id);
      }
      return widget;
    };

    const currentKernelWidget = (): IKernelWidget | null => {
      const current = app.shell.currentWidget;
      return isKernelWidget(current) ? current : null;
    };

    /** Open a terminal on the kernel of a notebook/console, placed under it. */
    const openForKernelWidget = async (w: IKernelWidget, extra: ReadonlyPartialJSONObject = {}) => {
      await w.sessionContext.ready;
      const kernel = w.sessionContext.session?.kernel;
      if (!kernel) {
        throw new Error('This notebook has no kernel.');
      }
      return openPanel({ ...extra, kernelId: kernel.id, kernelName: kernel.name, ref: w.id });
    };

    app.commands.addCommand(CommandIDs.open, {
      label: args => (args.isPalette ? 'New Kernel Terminal' : 'Kernel Terminal'),
      caption: 'A terminal whose shell runs where a kernel runs',
      icon: args => (args.isPalette ? undefined : terminalIcon),
      execute: args => openPanel(args)
    });

    app.commands.addCommand(CommandIDs.openForNotebook, {
      label: 'Open Kernel Terminal on This Kernel',
      caption: "A terminal on the current notebook's kernel",
      icon: terminalIcon,
      isEnabled: () => !!currentKernelWidget()?.sessionContext.session?.kernel,
      execute: () => {
        const w = currentKernelWidget();
        return w ? openForKernelWidget(w) : undefined;
      }
    });

    const currentTerminal = (): KernelTerminal | null => tracker.currentWidget;
    app.commands.addCommand(CommandIDs.interrupt, {
      label: 'Interrupt Kernel Terminal Process',
      isEnabled: () => !!currentTerminal(),
      execute: () => currentTerminal()?.signal('interrupt')
    });
    app.commands.addCommand(CommandIDs.terminate, {
      label: 'Terminate Kernel Terminal Process',
      isEnabled: () => !!currentTerminal(),
      execute: () => currentTerminal()?.terminate()
    });
    app.commands.addCommand(CommandIDs.copy, {
      label: 'Copy',
      execute: async () => {
        const text = currentTerminal()?.terminal.getSelection();
        if (text) {
          await navigator.clipboard.writeText(text);
        }
      }
    });
    app.commands.addCommand(CommandIDs.paste, {
      label: 'Paste',
      execute: async () => {
        const text = await navigator.clipboard.readText();
        currentTerminal()?.paste(text);
      }
    });
    app.contextMenu.addItem({ command: CommandIDs.copy, selector: '.jp-KernelTerminal', rank: 1 });
    app.contextMenu.addItem({ command: CommandIDs.paste, selector: '.jp-KernelTerminal', rank: 2 });
    app.contextMenu.addItem({ command: CommandIDs.interrupt, selector: '.jp-KernelTerminal', rank: 3 });
    app.contextMenu.addItem({ command: CommandIDs.openForNotebook, selector: '.jp-Notebook', rank: 100 });

    if (launcher) {
      launcher.add({ command: CommandIDs.open, category: 'Other', rank: 1 });
    }
    if (palette) {
      const category = 'Kernel Terminal';
      palette.addItem({ command: CommandIDs.open, category, args: { isPalette: true } });
      palette.addItem({ command: CommandIDs.openForNotebook, category });
      palette.addItem({ command: CommandIDs.interrupt, category });
      palette.addItem({ command: CommandIDs.terminate, category });
      palette.addItem({ command: CommandIDs.showSessions, category });
    }

    // Notebook toolbar button: a terminal on that notebook's kernel.
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (panel: Widget & { toolbar: { insertItem(i: number, name: string, w: Widget): boolean } }) => {
        const button = new ToolbarButton({
          icon: terminalIcon,
          tooltip: "Open a Kernel Terminal on this notebook's kernel",
          onClick: () => {
            if (isKernelWidget(panel)) {
              void openForKernelWidget(panel);
            }
          }
        });
        button.addClass('jp-KernelTerminal-toolbarButton');
        panel.toolbar.insertItem(10, 'kernelTerminal', button);
        return new DisposableDelegate(() => button.dispose());
      }
    } as DocumentRegistry.IWidgetExtension<any, any>);

    // Restore panels after a reload: same kernel, same process, screen repainted.
    if (restorer) {
      void restorer.restore(tracker, {
        command: CommandIDs.open,
        args: w => ({ ...w.state, id: w.id, activate: false }),
        name: w => w.id,
        when: app.serviceManager.ready
      });
    }

    // Settings.
    const applySettings = (composite: Partial<ITerminalSettings>) => {
      settings = { ...DEFAULT_SETTINGS, ...composite };
      tracker.forEach(w => w.updateSettings(settings));
    };
    if (settingRegistry) {
      void settingRegistry.load(PLUGIN_ID).then(s => {
        applySettings(s.composite as Partial<ITerminalSettings>);
        s.changed.connect(() => applySettings(s.composite as Partial<ITerminalSettings>));
      }).catch(err => console.warn('codex-exec: settings not loaded', err));
    }
    themeManager?.themeChanged.connect(() => tracker.forEach(w => w.setTheme(isLight())));
    // Font size steps write the setting, so they persist and reach every panel.
    const stepFont = async (delta: number) => {
      const size = Math.min(72, Math.max(6, settings.fontSize + delta));
      if (settingRegistry) {
        await settingRegistry.set(PLUGIN_ID, 'fontSize', size);
      } else {
        applySettings({ ...settings, fontSize: size });
      }
    };
    app.commands.addCommand(CommandIDs.increaseFont, {
      label: 'Increase Kernel Terminal Font Size',
      execute: () => stepFont(1)
    });
    app.commands.addCommand(CommandIDs.decreaseFont, {
      label: 'Decrease Kernel Terminal Font Size',
      execute: () => stepFont(-1)
    });
    palette?.addItem({ command: CommandIDs.increaseFont, category: 'Kernel Terminal' });
    palette?.addItem({ command: CommandIDs.decreaseFont, category: 'Kernel Terminal' });

    // `%terminal` outputs.
    if (rendermime) {
      const openRequest = async (request: ITerminalRequest, node: HTMLElement) => {
        const args = { processId: request.processId, sessionId: request.sessionId } as ReadonlyPartialJSONObject;
        const owner = kernelWidgetOf(app, node);
        if (owner) {
          await openForKernelWidget(owner, args);
        } else if (request.kernelId) {
          await openPanel({ ...args, kernelId: request.kernelId });
        } else {
          throw new Error('Kernel Terminal: cannot tell which kernel this output belongs to.');
        }
      };
      rendermime.addFactory(rendererFactory(openRequest), 0);
    }

    // The sidebar.
    const sidebar = new SessionsSidebar(pool, {
      openProcess: (kernelId, processId) => void openPanel({ kernelId, processId }),
      openSession: (kernelId, sessionId) => void openPanel({ kernelId, sessionId }),
      newTerminal: kernelId => void openPanel({ kernelId }),
      currentKernelId: () => {
        const t = currentTerminal();
        if (t) {
          return t.kernelId;
        }
        return currentKernelWidget()?.sessionContext.session?.kernel?.id ?? null;
      }
    });
    sidebar.title.icon = terminalIcon;
    app.shell.add(sidebar, 'left', { rank: 650 });
    if (restorer) {
      restorer.add(sidebar, sidebar.id);
    }
    app.commands.addCommand(CommandIDs.showSessions, {
      label: 'Show Kernel Processes',
      execute: async args => {
        app.shell.activateById(sidebar.id);
        if (typeof args.kernelId === 'string') {
          await sidebar.showKernel(args.kernelId);
        }
      }
    });
    void labShell;
  }
};

export default plugin;

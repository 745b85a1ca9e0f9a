/**
 * Getting the user's attention while the tab is in the background: an unread
 * count in the title, and a system notification if they opted in. A
 * notification never contains message text (lock screens are public).
 */
const BASE_TITLE = 'Anon Chat';

export class Attention {
  systemNotifications = false;
  #unread = 0;

  constructor() {
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) return;
      this.#unread = 0;
      document.title = BASE_TITLE;
    });
  }

  get supported(): boolean {
    return 'Notification' in window;
  }

  /** Asks for permission (needs a user gesture); true if notifications can be shown. */
  async enable(): Promise<boolean> {
    if (!this.supported) return false;
    const permission =
      Notification.permission === 'default' ? await Notification.requestPermission() : Notification.permission;
    this.systemNotifications = permission === 'granted';
    return this.systemNotifications;
  }

  alert(what: 'matched' | 'message' | 'ended'): void {
    if (!document.hidden) return;
    this.#unread++;
    const text = { matched: 'You are now chatting', message: 'New message', ended: 'Chat ended' }[what];
    document.title = `(${this.#unread}) ${text} · ${BASE_TITLE}`;
    if (!this.systemNotifications || !this.supported || Notification.permission !== 'granted') return;
    try {
      new Notification(BASE_TITLE, { body: text, tag: 'anon-chat' });
    } catch {
      // Android Chrome only allows notifications from a service worker; the title still tells.
    }
  }
}

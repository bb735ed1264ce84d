'use strict';
// Gatehouse's minimal login page: the password step of POST /api2/json/access/ticket with
// http-only=1 (proxyd sets the HttpOnly ticket cookie), then back to "next".
(() => {
  const form = document.getElementById('login');
  const error = document.getElementById('error');
  const button = form.querySelector('button');
  // The server puts only a local path in data-next; checked again here: no open redirect.
  const local = (p) => typeof p === 'string' && p.startsWith('/') && !p.startsWith('//') &&
    !p.startsWith('/\\') && !/[\u0000-\u001f\u007f\\]/.test(p);
  const next = local(form.dataset.next) ? form.dataset.next : '/';
  const show = (msg) => { error.textContent = msg; };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    show('');
    button.disabled = true;
    try {
      const resp = await fetch('/api2/json/access/ticket', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
        body: JSON.stringify({
          username: form.elements.username.value,
          password: form.elements.password.value,
          realm: form.elements.realm.value,
          'http-only': 1,
        }),
      });
      const answer = await resp.json().catch(() => ({}));
      if (resp.status === 401) {
        show('Login failed: wrong user name, realm or password.');
        return;
      }
      if (resp.status === 429) {
        show('Too many failed attempts. Try again later.');
        return;
      }
      if (!resp.ok) {
        show(answer.message || `Login failed (${resp.status}).`);
        return;
      }
      const data = answer.data || {};
      if (typeof data.ticket === 'string' && data.ticket.includes(':!tfa!')) {
        show('This account uses two-factor authentication. This page cannot do the second step yet.');
        return;
      }
      location.assign(next);
    } catch (e) {
      show('Cannot reach the server.');
    } finally {
      button.disabled = false;
    }
  });
})();

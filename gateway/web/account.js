'use strict';
// Gatehouse's account page: the signed-in user's password, API tokens and second factors,
// through the PBS API with the CSRF token proxyd rendered into the page. The session ticket
// stays in the HttpOnly cookie. A 401 with a session that no longer works sends the browser
// to the login page with reason=expired; a 401 with a working session is a wrong current
// password, shown next to that field.
(() => {
  const gh = window.gatehouse;
  const root = document.getElementById('account');
  const user = root.dataset.user;
  let csrf = root.dataset.csrf;
  const enc = encodeURIComponent;
  const $ = (id) => document.getElementById(id);
  const statusLine = $('status');
  const loginAgain = '/gatehouse/login?next=%2Fgatehouse%2Faccount&reason=expired';

  function say(msg) {
    statusLine.textContent = msg;
    statusLine.hidden = msg === '';
  }

  // session asks proxyd whether the cookie still is a working session (this is not counted
  // as a failed login) and takes the fresh CSRF token it gives; false sends the browser to the
  // login page.
  async function session() {
    let resp;
    try {
      resp = await fetch('/gatehouse/session', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    } catch (e) {
      return true; // unreachable: let the caller report its own failure
    }
    if (resp.status === 401) {
      location.assign(loginAgain);
      return false;
    }
    const answer = await resp.json().catch(() => ({}));
    if (answer.data && answer.data.CSRFPreventionToken) csrf = answer.data.CSRFPreventionToken;
    return true;
  }

  // csrfAge is the age in seconds of the page's CSRF token (<8 hex digits time>:<mac>); it is
  // valid for 2 h.
  const csrfAge = () => Date.now() / 1000 - parseInt(csrf.split(':')[0], 16);

  // call is gh.api with the CSRF token (renewed when it is over an hour old). A 401 is looked
  // into: when the session itself is gone the browser goes back to the login page and the
  // answer has expired set; otherwise the call was refused for what it carried (a wrong
  // current password).
  async function call(method, path, body) {
    if (method !== 'GET' && !(csrfAge() < 3600)) await session();
    let a;
    try {
      a = await gh.api(method, path, body, method === 'GET' ? undefined : csrf);
    } catch (e) {
      return { status: 0, data: null, message: 'Cannot reach the server. Check your connection and try again.', errors: {} };
    }
    if (a.status === 401 && !(await session())) a.expired = true;
    return a;
  }

  // failed shows a refused answer next to field: 401 with a working session means the
  // current password (passwordField) was wrong.
  function failed(a, field, passwordField) {
    if (a.expired) return;
    if (a.status === 401 && passwordField) {
      gh.fieldError(passwordField, 'Wrong password.');
      passwordField.focus();
      return;
    }
    gh.fieldError(field, a.status === 0 ? a.message : gh.explain(a));
    if (field.focus) field.focus();
  }

  // busy disables button while work runs.
  async function busy(button, work) {
    button.disabled = true;
    try {
      await work();
    } finally {
      button.disabled = false;
    }
  }

  // ---- logout ----
  // Only an accepted logout clears the cookie (proxyd) and says so; anything else is shown.
  $('logout').addEventListener('click', (ev) => busy(ev.currentTarget, async () => {
    const a = await call('DELETE', '/access/ticket');
    if (a.expired) return;
    if (a.status === 200) {
      location.assign('/gatehouse/login?reason=logout');
      return;
    }
    say('Signing out failed: ' + (a.status === 0 ? a.message : gh.explain(a)) + ' You are still signed in.');
  }));

  // ---- password (pbs realm only: the page has no form for other realms) ----
  const pwForm = $('password-form');
  if (pwForm) pwForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    gh.clearErrors(pwForm);
    say('');
    const cur = $('current-password');
    const nw = $('new-password');
    const again = $('confirm-password');
    if (!gh.required(cur, nw, again)) return;
    if (nw.value.length < 8) {
      gh.fieldError(nw, 'Use at least 8 characters.');
      nw.focus();
      return;
    }
    if (nw.value !== again.value) {
      gh.fieldError(again, 'The two new passwords differ.');
      again.focus();
      return;
    }
    busy(pwForm.querySelector('button[type=submit]'), async () => {
      const a = await call('PUT', '/access/password', { userid: user, password: nw.value, 'confirmation-password': cur.value });
      if (a.status !== 200) {
        failed(a, nw, cur);
        return;
      }
      pwForm.reset();
      say('Password changed. Your other sessions have ended.');
    });
  });

  // ---- API tokens ----
  const tokenPath = (name) => `/access/users/${enc(user)}/token` + (name ? '/' + enc(name) : '');
  // The token name follows the last "!": a user name may hold "!" itself.
  const tokenName = (tokenid) => tokenid.slice(tokenid.lastIndexOf('!') + 1);

  function showSecret(tokenid, secret) {
    $('secret-token').textContent = tokenid;
    $('secret-value').textContent = secret;
    $('secret-copied').textContent = '';
    $('secret-box').hidden = false;
    $('secret-box').focus();
  }

  // confirmIn replaces the action cell's buttons with a question and two buttons.
  function confirmIn(cell, question, yes, action) {
    const old = [...cell.childNodes];
    const q = document.createElement('span');
    q.textContent = question + ' ';
    const ok = document.createElement('button');
    ok.type = 'button';
    ok.textContent = yes;
    const no = document.createElement('button');
    no.type = 'button';
    no.className = 'secondary';
    no.textContent = 'Cancel';
    no.addEventListener('click', () => cell.replaceChildren(...old));
    ok.addEventListener('click', () => busy(ok, async () => {
      await action();
    }));
    cell.replaceChildren(q, ok, no);
    ok.focus();
  }

  function tokenRow(t) {
    const tr = document.createElement('tr');
    const name = tokenName(t.tokenid);
    tr.dataset.token = name;
    const cells = [t.tokenid, t.comment || '', t.expire ? new Date(t.expire * 1000).toLocaleString() : 'never', t.enable ? 'yes' : 'no'];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      if (i === 0) {
        const code = document.createElement('code');
        code.textContent = text;
        td.append(code);
      } else {
        td.textContent = text;
      }
      tr.append(td);
    });
    const actions = document.createElement('td');
    actions.className = 'actions';
    const rotate = document.createElement('button');
    rotate.type = 'button';
    rotate.className = 'rotate';
    rotate.textContent = 'Rotate secret';
    rotate.setAttribute('aria-label', `Rotate the secret of ${t.tokenid}`);
    rotate.addEventListener('click', () => confirmIn(actions, 'The old secret stops working at once.', 'Rotate', async () => {
      const a = await call('PUT', tokenPath(name), { regenerate: 1 });
      if (a.status !== 200) {
        failed(a, $('token-table'));
        return;
      }
      await loadTokens();
      showSecret(a.data.tokenid, a.data.secret);
    }));
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'remove secondary';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove ${t.tokenid}`);
    remove.addEventListener('click', () => confirmIn(actions, `Remove ${name}?`, 'Remove', async () => {
      const a = await call('DELETE', tokenPath(name));
      if (a.status !== 200) {
        failed(a, $('token-table'));
        return;
      }
      await loadTokens();
      say(`Token ${t.tokenid} removed.`);
    }));
    actions.append(rotate, ' ', remove);
    tr.append(actions);
    return tr;
  }

  // loading marks section busy (aria-busy) while work runs.
  async function loading(section, work) {
    section.setAttribute('aria-busy', 'true');
    try {
      await work();
    } finally {
      section.removeAttribute('aria-busy');
    }
  }

  const loadTokens = () => loading($('tokens-section'), listTokens);
  async function listTokens() {
    const a = await call('GET', tokenPath());
    if (a.expired) return;
    if (a.status !== 200) {
      $('token-table-error').textContent = 'Cannot list your tokens: ' + gh.explain(a);
      return;
    }
    $('token-table-error').textContent = '';
    const list = (a.data || []).sort((x, y) => x.tokenid.localeCompare(y.tokenid));
    $('token-rows').replaceChildren(...list.map(tokenRow));
    $('token-table').hidden = list.length === 0;
    $('token-empty').hidden = list.length > 0;
  }

  const tokenForm = $('token-form');
  tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    gh.clearErrors(tokenForm);
    const name = $('token-name');
    const comment = $('token-comment');
    if (!gh.required(name)) return;
    if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{1,63}$/.test(name.value.trim())) {
      gh.fieldError(name, 'Use 2 to 64 letters, digits, "-", "_" and ".", not starting with "-" or ".".');
      name.focus();
      return;
    }
    busy(tokenForm.querySelector('button[type=submit]'), async () => {
      const body = comment.value.trim() ? { comment: comment.value.trim() } : {};
      const a = await call('POST', tokenPath(name.value.trim()), body);
      if (a.status !== 200) {
        failed(a, a.errors.comment ? comment : name);
        return;
      }
      tokenForm.reset();
      await loadTokens();
      showSecret(a.data.tokenid, a.data.value);
    });
  });
  gh.copyButton($('secret-copy'), $('secret-value'), $('secret-copied'));

  // ---- second factors ----
  const tfaPath = (id) => `/access/tfa/${enc(user)}` + (id ? '/' + enc(id) : '');
  const tfaPassword = $('tfa-password');
  const typeNames = { totp: 'Authenticator app', webauthn: 'Security key', recovery: 'Recovery codes', u2f: 'U2F key', yubico: 'Yubico OTP' };

  // needPassword checks the current password field is filled, showing an error otherwise.
  function needPassword() {
    gh.fieldError(tfaPassword, '');
    if (tfaPassword.value !== '') return true;
    gh.fieldError(tfaPassword, 'Enter your current password first.');
    tfaPassword.focus();
    return false;
  }

  function tfaItem(e) {
    const li = document.createElement('li');
    li.dataset.id = e.id;
    li.dataset.type = e.type;
    const label = document.createElement('span');
    const enabled = e.enable === undefined || e.enable;
    label.textContent = `${typeNames[e.type] || e.type}: ${e.description || e.id}` +
      (e.created ? `, added ${new Date(e.created * 1000).toLocaleDateString()}` : '') + (enabled ? '' : ' (disabled)');
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'remove secondary';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove ${label.textContent}`);
    const err = document.createElement('span');
    err.className = 'error';
    err.id = `tfa-remove-${e.id}-error`;
    remove.id = `tfa-remove-${e.id}`;
    remove.setAttribute('aria-describedby', err.id);
    remove.addEventListener('click', () => {
      if (!needPassword()) return;
      busy(remove, async () => {
        const a = await call('DELETE', tfaPath(e.id), { password: tfaPassword.value });
        if (a.status !== 200) {
          failed(a, remove, tfaPassword);
          return;
        }
        tfaPassword.value = '';
        await loadTFA();
        say(`${typeNames[e.type] || e.type} removed.`);
      });
    });
    li.append(label, ' ', remove, ' ', err);
    return li;
  }

  const loadTFA = () => loading($('tfa-section'), listTFA);
  async function listTFA() {
    const a = await call('GET', tfaPath());
    if (a.expired) return;
    if (a.status !== 200) {
      $('tfa-list-error').textContent = 'Cannot list your second factors: ' + gh.explain(a);
      return;
    }
    $('tfa-list-error').textContent = '';
    const list = a.data || [];
    $('tfa-list').replaceChildren(...list.map(tfaItem));
    $('tfa-empty').hidden = list.length > 0;
  }

  // addFactor posts one TFA change with the current password and answers the data, or null
  // after showing the refusal next to field (or next to byParam's field for the parameter the
  // server named).
  async function addFactor(body, field, byParam = {}) {
    const a = await call('POST', tfaPath(), { ...body, password: tfaPassword.value });
    if (a.status !== 200) {
      failed(a, Object.keys(a.errors).map((k) => byParam[k]).find(Boolean) || field, tfaPassword);
      return null;
    }
    return a.data || {};
  }

  // TOTP: proxyd makes the secret and its QR code; apid stores it once a code proves it.
  const totpForm = $('totp-form');
  let totpURI = '';
  $('totp-start').addEventListener('click', (ev) => busy(ev.currentTarget, async () => {
    gh.fieldError($('totp-start'), '');
    let resp;
    try {
      resp = await fetch('/gatehouse/totp', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    } catch (e) {
      gh.fieldError($('totp-start'), 'Cannot reach the server.');
      return;
    }
    if (resp.status === 401) {
      location.assign(loginAgain);
      return;
    }
    const answer = await resp.json().catch(() => ({}));
    if (!resp.ok || !answer.data) {
      gh.fieldError($('totp-start'), `Cannot make a new key (${resp.status}).`);
      return;
    }
    totpURI = answer.data.uri;
    $('totp-qr').src = answer.data.qr;
    $('totp-secret').textContent = answer.data.secret.replace(/(.{4})/g, '$1 ').trim();
    totpForm.hidden = false;
    $('totp-value').focus();
  }));
  $('totp-cancel').addEventListener('click', () => {
    totpForm.hidden = true;
    totpURI = '';
    gh.clearErrors(totpForm);
    $('totp-start').focus();
  });
  totpForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    gh.clearErrors(totpForm);
    const desc = $('totp-description');
    const value = $('totp-value');
    if (!gh.required(desc, value) || !needPassword()) return;
    busy(totpForm.querySelector('button[type=submit]'), async () => {
      const data = await addFactor({ type: 'totp', description: desc.value.trim(), totp: totpURI, value: value.value.trim() },
        value, { description: desc });
      if (!data) return;
      totpForm.hidden = true;
      totpForm.reset();
      tfaPassword.value = '';
      await loadTFA();
      say('Authenticator app added. Sign-ins now ask for a code.');
    });
  });

  // WebAuthn: apid's challenge (go-webauthn's creation options, base64url), the browser's
  // authenticator, then apid checks and stores the credential.
  const waForm = $('webauthn-form');
  waForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    gh.clearErrors(waForm);
    const desc = $('webauthn-description');
    if (!gh.required(desc) || !needPassword()) return;
    if (!window.PublicKeyCredential) {
      gh.fieldError(desc, 'This browser cannot use security keys.');
      return;
    }
    busy(waForm.querySelector('button[type=submit]'), async () => {
      const begun = await addFactor({ type: 'webauthn', description: desc.value.trim() }, desc);
      if (!begun) return;
      const pk = JSON.parse(begun.challenge).publicKey;
      let cred;
      try {
        cred = await navigator.credentials.create({
          publicKey: {
            ...pk,
            challenge: gh.fromB64u(pk.challenge),
            user: { ...pk.user, id: gh.fromB64u(pk.user.id) },
            excludeCredentials: (pk.excludeCredentials || []).map((c) => ({ ...c, id: gh.fromB64u(c.id) })),
          },
        });
      } catch (e) {
        gh.fieldError(desc, `The security key did not register (${e.name}).`);
        return;
      }
      const response = {
        id: cred.id,
        rawId: gh.toB64u(cred.rawId),
        type: cred.type,
        response: {
          attestationObject: gh.toB64u(cred.response.attestationObject),
          clientDataJSON: gh.toB64u(cred.response.clientDataJSON),
        },
      };
      const done = await addFactor({ type: 'webauthn', challenge: pk.challenge, value: JSON.stringify(response) }, desc);
      if (!done) return;
      tfaPassword.value = '';
      await loadTFA();
      say('Security key registered. Sign-ins can use it now.');
    });
  });

  // Recovery codes: shown once.
  $('recovery-generate').addEventListener('click', (ev) => {
    const button = ev.currentTarget;
    gh.fieldError(button, '');
    if (!needPassword()) return;
    busy(button, async () => {
      const data = await addFactor({ type: 'recovery' }, button);
      if (!data) return;
      tfaPassword.value = '';
      $('recovery-codes').textContent = (data.recovery || []).join('\n');
      $('recovery-copied').textContent = '';
      $('recovery-box').hidden = false;
      $('recovery-box').focus();
      await loadTFA();
    });
  });
  gh.copyButton($('recovery-copy'), $('recovery-codes'), $('recovery-copied'));

  loadTokens();
  loadTFA();
})();

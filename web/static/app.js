/* vks serve UI behaviour (no framework, no inline script: the CSP forbids it). Every act is one
 * API call with the page's CSRF token; secrets are put into the page only as text, and removed
 * from the DOM when done (create: after "saved"; reveal: after 30 s). */
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.getAttribute('content') : '';

  async function api(method, path, body) {
    const opt = { method, headers: { 'X-CSRF-Token': csrf }, credentials: 'same-origin' };
    if (body !== undefined) {
      opt.headers['Content-Type'] = 'application/json';
      opt.body = JSON.stringify(body);
    }
    const r = await fetch(path, opt);
    let j = {};
    try { j = await r.json(); } catch (e) { j = { error: 'HTTP ' + r.status }; }
    return { status: r.status, ok: r.ok, body: j };
  }
  const credPath = (name, tenant, act) => '/api/v1/credentials/' + name.split('/').map(encodeURIComponent).join('/') +
    (act ? '/' + act : '') + (tenant ? '?tenant=' + encodeURIComponent(tenant) : '');
  const lines = (t) => t.split(/[\n,]/).map((s) => s.trim()).filter((s) => s.length);
  const DOMAIN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
  const IPV4 = /^(\d{1,3})(\.\d{1,3}){3}(\/\d{1,2})?$/;
  const IPV6 = /^[0-9a-f:]+(\/\d{1,3})?$/i;
  function badEntry(list, re2) {
    for (const e of list) if (!(re2 ? (IPV4.test(e) || (e.includes(':') && IPV6.test(e))) : DOMAIN.test(e))) return e;
    return null;
  }
  function wireAll(box, area) {
    if (!box || !area) return;
    const sync = () => { area.disabled = box.checked; };
    box.addEventListener('change', sync);
    sync();
  }
  async function copy(text, btn) {
    try { await navigator.clipboard.writeText(text); btn.textContent = 'Copied'; } catch (e) { btn.textContent = 'Copy failed: select the text'; }
  }

  const lo = $('logout');
  if (lo) lo.addEventListener('click', async () => { await api('POST', '/api/v1/logout', {}); location.href = '/login'; });

  const lf = $('login-form');
  if (lf) {
    const radios = lf.querySelectorAll('input[name=method]');
    const sync = () => {
      const tok = lf.querySelector('input[name=method]:checked').value === 'token';
      lf.querySelector('.up').hidden = tok;
      lf.querySelector('.tk').hidden = !tok;
    };
    radios.forEach((r) => r.addEventListener('change', sync));
    sync();
    lf.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const m = lf.querySelector('input[name=method]:checked').value;
      const body = m === 'token' ? { method: 'token', token: $('token').value }
        : { method: 'userpass', username: $('username').value, password: $('password').value };
      const r = await api('POST', '/api/v1/login', body);
      $('password').value = ''; $('token').value = '';
      if (r.ok) location.href = '/ui/credentials';
      else $('login-error').textContent = r.body.error || 'login failed';
    });
  }

  const filter = $('filter'), stf = $('state-filter');
  function applyFilter() {
    const q = (filter.value || '').toLowerCase(), s = stf.value;
    document.querySelectorAll('#cred-table tbody tr').forEach((tr) => {
      const okq = !q || tr.dataset.search.toLowerCase().includes(q);
      const oks = !s || (s === 'due' ? ['soon', 'overdue', 'invalid'].includes(tr.dataset.due) : tr.dataset.state === s);
      tr.hidden = !(okq && oks);
    });
  }
  if (filter && stf) { filter.addEventListener('input', applyFilter); stf.addEventListener('change', applyFilter); }

  const cf = $('create-form');
  if (cf) {
    wireAll($('c-all-domains'), $('c-domains'));
    wireAll($('c-all-ips'), $('c-ips'));
    cf.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const err = $('create-error');
      const ad = $('c-all-domains').checked, ai = $('c-all-ips').checked;
      const doms = ad ? [] : lines($('c-domains').value), ips = ai ? [] : lines($('c-ips').value);
      const bd = badEntry(doms, false), bi = badEntry(ips, true);
      if (!ad && !doms.length) { err.textContent = 'Give at least one domain, or tick All domains.'; return; }
      if (bd) { err.textContent = 'Not a domain: ' + bd; return; }
      if (!ai && !ips.length) { err.textContent = 'Give at least one address, or tick All IPs.'; return; }
      if (bi) { err.textContent = 'Not an IP address or CIDR range: ' + bi; return; }
      const body = { name: $('c-name').value.trim(), username: $('c-username').value.trim(), all_domains: ad,
        domains: doms, all_ips: ai, ips };
      if ($('c-owner').value.trim()) body.owner = $('c-owner').value.trim();
      if ($('c-tenant').value.trim()) body.tenant = $('c-tenant').value.trim();
      const r = await api('POST', '/api/v1/credentials' + (body.tenant ? '?tenant=' + encodeURIComponent(body.tenant) : ''), body);
      if (r.status !== 201) { err.textContent = r.body.error || ('HTTP ' + r.status); return; }
      cf.hidden = true;
      const box = $('pw-once');
      $('pw-value').textContent = r.body.password;
      box.dataset.name = r.body.name;
      box.dataset.tenant = body.tenant || '';
      box.hidden = false;
      $('pw-copy').focus();
    });
    $('pw-copy').addEventListener('click', (e) => copy($('pw-value').textContent, e.target));
    $('pw-saved').addEventListener('click', () => {
      const box = $('pw-once'), name = box.dataset.name, t = box.dataset.tenant;
      box.remove();
      location.replace('/ui/credential?' + (t ? 'tenant=' + encodeURIComponent(t) + '&' : '') + 'name=' + encodeURIComponent(name));
    });
  }

  const rf = $('reveal-form');
  if (rf) {
    let timer = null;
    rf.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const reason = $('reason').value.trim();
      if (!reason) { $('reveal-error').textContent = 'A reason is required.'; return; }
      const body = { reason };
      if ($('totp')) body.totp = $('totp').value.trim();
      const r = await api('POST', credPath(rf.dataset.name, rf.dataset.tenant, 'reveal'), body);
      if ($('totp')) $('totp').value = '';
      if (!r.ok) { $('reveal-error').textContent = (r.status === 403 ? 'Permission denied: ' : '') + (r.body.error || ''); return; }
      $('reveal-error').textContent = '';
      const box = $('revealed');
      let val = $('revealed-value');
      if (!val) { val = document.createElement('code'); val.id = 'revealed-value'; box.prepend(val); }
      val.textContent = r.body.password;
      box.hidden = false;
      let left = r.body.hide_after_seconds || 30;
      $('revealed-timer').textContent = 'hides in ' + left + ' s';
      clearInterval(timer);
      timer = setInterval(() => {
        left -= 1;
        $('revealed-timer').textContent = 'hides in ' + left + ' s';
        if (left <= 0) {
          clearInterval(timer);
          val.remove();
          box.hidden = true;
          $('revealed-timer').textContent = '';
        }
      }, 1000);
    });
    $('revealed-copy').addEventListener('click', (e) => { const v = $('revealed-value'); if (v) copy(v.textContent, e.target); });
  }

  const sf = $('restrict-form');
  if (sf) {
    wireAll($('r-all-domains'), $('r-domains'));
    wireAll($('r-all-ips'), $('r-ips'));
    sf.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const ad = $('r-all-domains').checked, ai = $('r-all-ips').checked;
      const doms = ad ? [] : lines($('r-domains').value), ips = ai ? [] : lines($('r-ips').value);
      const bd = badEntry(doms, false), bi = badEntry(ips, true), msg = $('restrict-msg');
      if (bd || bi) { msg.textContent = 'Not valid: ' + (bd || bi); return; }
      const r = await api('POST', credPath(sf.dataset.name, sf.dataset.tenant, 'restrict'), { all_domains: ad, domains: doms, all_ips: ai, ips });
      msg.textContent = r.ok ? 'Saved: ' + r.body.permissions : (r.status === 403 ? 'Permission denied: ' : '') + (r.body.error || '');
    });
  }

  const rot = $('rotate-form');
  if (rot) {
    const msg = $('rotate-msg');
    const mark = (steps) => {
      rot.querySelectorAll('#rotate-steps li').forEach((li) => {
        const hit = steps.find((s) => s === li.dataset.step || s.startsWith(li.dataset.step + ':'));
        li.classList.toggle('done', !!hit);
        if (hit) li.textContent = hit;
      });
    };
    async function go(body) {
      msg.textContent = 'starting...';
      rot.querySelectorAll('button').forEach((b) => { b.disabled = true; });
      const r = await api('POST', credPath(rot.dataset.name, rot.dataset.tenant, 'rotate'), body);
      if (r.status === 200) { msg.textContent = 'aborted'; location.reload(); return; }
      if (r.status !== 202) {
        msg.textContent = (r.status === 403 ? 'Permission denied: ' : '') + (r.body.error || 'HTTP ' + r.status);
        rot.querySelectorAll('button').forEach((b) => { b.disabled = false; });
        return;
      }
      const poll = async () => {
        const j = await api('GET', '/api/v1/jobs/' + r.body.job);
        if (!j.ok) { msg.textContent = j.body.error || 'lost the job'; return; }
        mark(j.body.steps);
        if (!j.body.done) { msg.textContent = 'running: ' + (j.body.steps.slice(-1)[0] || 'claim'); setTimeout(poll, 250); return; }
        msg.textContent = j.body.result === 'success'
          ? 'rotated: version ' + j.body.new_version + ' is current, ' + j.body.old_version + ' is previous'
          : 'stopped: ' + j.body.error;
        if (j.body.result === 'success') {
          const a = document.createElement('a');
          a.href = location.href;
          a.textContent = ' (reload the page for the new version and its audit events)';
          msg.appendChild(a);
        }
        rot.dataset.result = j.body.result;
        rot.querySelectorAll('button').forEach((b) => { b.disabled = false; });
      };
      poll();
    }
    rot.addEventListener('submit', (ev) => { ev.preventDefault(); go({}); });
    if ($('rotate-resume')) $('rotate-resume').addEventListener('click', () => go({ resume: true }));
    if ($('rotate-abort')) $('rotate-abort').addEventListener('click', () => go({ abort: true }));
  }

  const xf = $('reset-form');
  if (xf) {
    const c = $('reset-confirm'), b = $('reset-btn'), msg = $('reset-msg');
    c.addEventListener('input', () => { b.disabled = c.value !== xf.dataset.name; });
    xf.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const reason = $('reset-reason').value.trim();
      if (!reason) { msg.textContent = 'A reason is required.'; return; }
      if (c.value !== xf.dataset.name) return;
      const body = { reason, rotate: $('reset-rotate').checked };
      if ($('reset-totp')) body.totp = $('reset-totp').value.trim();
      b.disabled = true;
      msg.textContent = 'resetting...';
      const r = await api('POST', credPath(xf.dataset.name, xf.dataset.tenant, 'reset'), body);
      if ($('reset-totp')) $('reset-totp').value = '';
      c.value = '';
      if (!r.body.reset_id) {
        msg.textContent = (r.status === 403 ? 'Permission denied: ' : '') + (r.body.error || 'HTTP ' + r.status);
        return;
      }
      const it = (r.body.credentials || [])[0] || {};
      const head = (r.ok ? (it.outcome === 'already' ? 'already reset' : 'reset') : 'stopped: ' + r.body.error) +
        ' (reset_id ' + r.body.reset_id + '); state now reset.';
      msg.textContent = head + (r.body.rotate_error ? ' Rotation not started: ' + r.body.rotate_error : '');
      xf.dataset.result = r.ok ? 'success' : 'failure';
      xf.dataset.resetId = r.body.reset_id;
      const sv = $('state-value');
      if (sv) { sv.textContent = 'reset'; sv.className = 'state state-reset'; }
      const reload = () => {
        const a = document.createElement('a');
        a.href = location.href;
        a.textContent = ' Reload for the record and its audit events.';
        msg.appendChild(a);
      };
      if (!r.body.job) { reload(); return; }
      const poll = async () => {   // the rotation that ends the reset runs as a job (as Rotate now)
        const j = await api('GET', '/api/v1/jobs/' + r.body.job);
        if (!j.ok) { msg.textContent = head + ' ' + (j.body.error || 'lost the rotation job'); return; }
        if (!j.body.done) { msg.textContent = head + ' Rotating: ' + (j.body.steps.slice(-1)[0] || 'claim'); setTimeout(poll, 250); return; }
        const ok = j.body.result === 'success';
        msg.textContent = head + (ok ? ' Rotated: version ' + j.body.new_version + ' is current; state now active.'
          : ' Rotation stopped, still reset: ' + j.body.error);
        if (ok && sv) { sv.textContent = 'active'; sv.className = 'state state-active'; }
        xf.dataset.rotation = j.body.result;
        reload();
      };
      poll();
    });
  }

  const df = $('delete-form');
  if (df) {
    const c = $('confirm'), b = $('delete-btn');
    c.addEventListener('input', () => { b.disabled = c.value !== df.dataset.username; });
    df.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const r = await api('DELETE', credPath(df.dataset.name, df.dataset.tenant), { confirm_username: c.value });
      if (r.ok) location.href = '/ui/credentials';
      else $('delete-error').textContent = (r.status === 403 ? 'Permission denied: ' : '') + (r.body.error || '');
    });
  }
})();

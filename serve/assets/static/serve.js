// wiremortem serve's pages: dropping files on the upload form and showing
// the upload's progress, filtering the case list, and following a case
// until its analysis ends. Every page works without it: the form posts,
// and a waiting case's page reloads itself.
'use strict';
(() => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  const bytes = n => {
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1).replace(/\.0$/, '') : String(n)) + ' ' + units[i];
  };

  const upload = document.getElementById('upload');
  if (upload) {
    const input = upload.querySelector('input[type=file]');
    const drop = document.getElementById('drop');
    const chosen = document.getElementById('chosen');
    const status = document.getElementById('upload-status');
    const bar = document.getElementById('upload-progress');
    const button = upload.querySelector('button[type=submit]');
    const maxFile = Number(upload.dataset.maxFile);
    const maxCase = Number(upload.dataset.maxCase);
    const list = () => chosen.replaceChildren(...Array.from(input.files, f => {
      const li = document.createElement('li');
      li.textContent = f.name + ' (' + bytes(f.size) + ')';
      return li;
    }));
    const fail = why => {
      status.textContent = why;
      status.className = 'error';
      bar.hidden = true;
      button.disabled = false;
    };
    input.addEventListener('change', list);
    for (const type of ['dragenter', 'dragover']) {
      drop.addEventListener(type, e => { e.preventDefault(); drop.classList.add('over'); });
    }
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', e => {
      e.preventDefault();
      drop.classList.remove('over');
      if (e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        list();
      }
    });
    upload.addEventListener('submit', e => {
      e.preventDefault();
      // The server checks too; checking here spares sending gigabytes
      // only to be refused.
      let total = 0;
      for (const f of input.files) {
        if (f.size > maxFile) return fail(f.name + ' is over the limit of ' + bytes(maxFile) + ' per file');
        total += f.size;
      }
      if (total > maxCase) return fail('the files are over the limit of ' + bytes(maxCase) + ' per case');
      const xhr = new XMLHttpRequest();
      xhr.open('POST', upload.action);
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.responseType = 'json';
      xhr.upload.addEventListener('progress', ev => {
        if (!ev.lengthComputable) return;
        bar.max = ev.total;
        bar.value = ev.loaded;
        status.textContent = 'uploading: ' + bytes(ev.loaded) + ' of ' + bytes(ev.total);
      });
      xhr.addEventListener('load', () => {
        const answer = xhr.response || {};
        if (xhr.status === 201 && answer.url) {
          status.textContent = 'uploaded; opening the case';
          location.assign(answer.url);
          return;
        }
        fail(answer.error || 'the server answered ' + xhr.status);
      });
      xhr.addEventListener('error', () => fail('the upload broke off: the server closed the connection (a file over its limit, or the server stopped)'));
      status.className = '';
      status.textContent = 'uploading';
      bar.hidden = false;
      button.disabled = true;
      xhr.send(new FormData(upload));
    });
  }

  const filter = document.getElementById('case-filter');
  if (filter) {
    const rows = Array.from(document.querySelectorAll('#case-table tbody tr'));
    filter.addEventListener('input', () => {
      const q = filter.value.trim().toLowerCase();
      for (const row of rows) row.hidden = q !== '' && !row.textContent.toLowerCase().includes(q);
    });
  }

  for (const form of document.querySelectorAll('form.delete')) {
    form.addEventListener('submit', e => {
      if (!confirm('Delete this case, its uploads and its reports?')) e.preventDefault();
    });
  }

  const state = document.getElementById('case-state');
  if (state && state.dataset.poll) {
    const bar = document.getElementById('case-progress');
    const text = document.getElementById('progress-text');
    const tick = () => fetch(state.dataset.poll, {headers: {Accept: 'application/json'}, cache: 'no-store'})
      .then(r => r.json())
      .then(p => {
        if (p.state !== 'queued' && p.state !== 'running') {
          location.reload();
          return;
        }
        if (bar && p.bytes_total) {
          bar.max = p.bytes_total;
          bar.value = p.bytes_read;
        }
        if (text) text.textContent = p.text;
        setTimeout(tick, 500);
      }, () => setTimeout(tick, 2000));
    setTimeout(tick, 500);
  }
})();

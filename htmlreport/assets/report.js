// wiremortem report: draws each chart from its JSON data block and makes
// the conversations table sortable and filterable.
//
// Everything in the data came from captures and logs and may be hostile.
// Data blocks are read with JSON.parse, never evaluated; tooltips are built
// as DOM nodes whose text is set with textContent, so no string from the
// data is ever parsed as HTML; nothing here builds HTML or script from
// data.
(function () {
  'use strict';

  function element(tag, className, text) {
    var el = document.createElement(tag);
    if (className) {
      el.className = className;
    }
    if (text !== undefined) {
      el.textContent = String(text);
    }
    return el;
  }

  // tipTable renders a tooltip: a title and label/value rows.
  function tipTable(title, rows) {
    var box = element('div');
    box.appendChild(element('div', 'tip-title', title));
    var table = element('table', 'tip');
    for (var i = 0; i < rows.length; i++) {
      var tr = element('tr');
      tr.appendChild(element('th', '', rows[i][0]));
      tr.appendChild(element('td', '', rows[i][1]));
      table.appendChild(tr);
    }
    box.appendChild(table);
    return box;
  }

  // itemTooltip shows the tip the report attached to a mark, or the
  // series name and value for marks without one.
  function itemTooltip(params) {
    var data = params.data;
    if (data && data.tip && Array.isArray(data.tip.rows)) {
      return tipTable(data.tip.title, data.tip.rows);
    }
    var value = Array.isArray(params.value) ? params.value[params.value.length - 1] : params.value;
    return tipTable(params.seriesName, [[params.name || 'value', value]]);
  }

  // axisTooltip lists every series' value at the hovered time.
  function axisTooltip(params) {
    if (!Array.isArray(params) || params.length === 0) {
      return element('div');
    }
    var rows = [];
    for (var i = 0; i < params.length; i++) {
      var p = params[i];
      var value = Array.isArray(p.value) ? p.value[1] : p.value;
      rows.push([p.seriesName, value]);
    }
    return tipTable(params[0].axisValueLabel, rows);
  }

  var charts = [];

  function drawChart(container) {
    var source = document.getElementById(container.getAttribute('data-option'));
    if (!source) {
      return;
    }
    var option = JSON.parse(source.textContent);
    option.tooltip = option.tooltip || {};
    // Our formatters replace any the data might carry, at every level.
    option.tooltip.formatter = option.tooltip.trigger === 'axis' ? axisTooltip : itemTooltip;
    // Confined tooltips stay inside the chart, and ECharts then draws no
    // arrow: its arrow is HTML with a style attribute, which the page's
    // Content-Security-Policy rightly refuses.
    option.tooltip.confine = true;
    (option.series || []).forEach(function (s) {
      if (s.tooltip) {
        delete s.tooltip.formatter;
      }
    });
    var height = parseInt(container.getAttribute('data-height'), 10);
    if (height > 0) {
      container.style.height = height + 'px';
    }
    var chart = echarts.init(container, null, { renderer: 'canvas' });
    chart.setOption(option);
    charts.push(chart);
  }

  var containers = document.querySelectorAll('.chart[data-option]');
  for (var i = 0; i < containers.length; i++) {
    drawChart(containers[i]);
  }
  window.addEventListener('resize', function () {
    charts.forEach(function (c) { c.resize(); });
  });
  document.body.setAttribute('data-charts-drawn', String(charts.length));

  // The conversations table: click a header to sort, type to filter.
  var table = document.getElementById('conversation-table');
  if (!table) {
    return;
  }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var headers = table.tHead.rows[0].cells;

  function sortKey(row, column, numeric) {
    var cell = row.cells[column];
    var key = cell.getAttribute('data-sort');
    if (key === null) {
      key = cell.textContent;
    }
    return numeric ? Number(key) : key;
  }

  function sortBy(column) {
    var header = headers[column];
    var numeric = header.getAttribute('data-type') === 'number';
    var ascending = header.getAttribute('aria-sort') !== 'ascending';
    for (var h = 0; h < headers.length; h++) {
      headers[h].removeAttribute('aria-sort');
    }
    header.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    rows.sort(function (a, b) {
      var x = sortKey(a, column, numeric);
      var y = sortKey(b, column, numeric);
      var order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  for (var c = 0; c < headers.length; c++) {
    headers[c].addEventListener('click', sortBy.bind(null, c));
  }

  var filter = document.getElementById('conversation-filter');
  var count = document.getElementById('conversation-count');
  var texts = new Map();
  rows.forEach(function (r) { texts.set(r, r.textContent.toLowerCase()); });
  filter.addEventListener('input', function () {
    var query = filter.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (r) {
      r.hidden = query !== '' && texts.get(r).indexOf(query) < 0;
      if (!r.hidden) {
        shown++;
      }
    });
    count.textContent = shown + ' shown';
  });
})();

/* binwatch console: the map of the user's sites (api/console/map.py), and the dispatch page's
   routes (api/console/dispatch.py: #map-routes, one line per vehicle through its stops).
   The server sends each site in Web Mercator tile space at zoom 0 (x, y in [0, 1]); here they
   are drawn by ECharts as a scatter on hidden value axes scaled like a map at the largest whole
   zoom that fits them, so tiles (when data-tile-url names a server) line up under the points.
   After each 5 s refresh of #map-live (htmx) the points are read again and redrawn. */
(function () {
  "use strict";
  var COLOURS = {
    alert: "#c62828", offline: "#616161", full: "#ef6c00", ok: "#2e7d32", no_data: "#9e9e9e",
    "stream-recyclable": "#1565c0", "stream-hazardous": "#c62828", "stream-kitchen": "#2e7d32",
    "stream-residual": "#616161"
  };
  var TILE = 256;
  var MAX_ZOOM = 18;
  var element = document.getElementById("map");
  if (!element || !window.echarts) { return; }
  var tileUrl = element.getAttribute("data-tile-url") || "";
  var tiles = document.createElement("div");
  tiles.className = "map-tiles";
  tiles.setAttribute("aria-hidden", "true");
  var canvas = document.createElement("div");
  canvas.className = "map-canvas";
  element.appendChild(tiles);
  element.appendChild(canvas);
  var chart = window.echarts.init(canvas, null, { renderer: "canvas" });
  var lastView = "";

  function points() {
    var data = document.getElementById("map-points");
    return data ? JSON.parse(data.textContent) : [];
  }

  function routes() {
    var data = document.getElementById("map-routes");
    return data ? JSON.parse(data.textContent) : [];
  }

  /* The largest whole zoom at which the points fit the element, and the tile-space window it
     shows centred on them. */
  function view(list, width, height) {
    var xs = list.map(function (p) { return p.x; });
    var ys = list.map(function (p) { return p.y; });
    var minX = Math.min.apply(null, xs), maxX = Math.max.apply(null, xs);
    var minY = Math.min.apply(null, ys), maxY = Math.max.apply(null, ys);
    var margin = 0.85;  // room for the symbols at the edges
    var zoom = 0;
    while (zoom < MAX_ZOOM &&
           (maxX - minX) * TILE * Math.pow(2, zoom + 1) <= width * margin &&
           (maxY - minY) * TILE * Math.pow(2, zoom + 1) <= height * margin) {
      zoom += 1;
    }
    var scale = TILE * Math.pow(2, zoom);  // pixels per unit of tile space
    var cx = (minX + maxX) / 2, cy = (minY + maxY) / 2;
    return {
      zoom: zoom, scale: scale,
      x0: cx - width / 2 / scale, x1: cx + width / 2 / scale,
      y0: cy - height / 2 / scale, y1: cy + height / 2 / scale
    };
  }

  function drawTiles(v) {
    var key = [v.zoom, v.x0, v.y0, v.x1, v.y1].join();
    if (!tileUrl || key === lastView) { return; }
    lastView = key;
    tiles.textContent = "";
    var n = Math.pow(2, v.zoom);
    for (var tx = Math.floor(v.x0 * n); tx <= Math.floor(v.x1 * n); tx++) {
      for (var ty = Math.floor(v.y0 * n); ty <= Math.floor(v.y1 * n); ty++) {
        if (tx < 0 || ty < 0 || tx >= n || ty >= n) { continue; }
        var img = document.createElement("img");
        img.alt = "";
        img.width = img.height = TILE;
        img.style.left = Math.round((tx / n - v.x0) * v.scale) + "px";
        img.style.top = Math.round((ty / n - v.y0) * v.scale) + "px";
        img.src = tileUrl.replace("{z}", v.zoom).replace("{x}", tx).replace("{y}", ty);
        tiles.appendChild(img);
      }
    }
  }

  function draw() {
    var list = points();
    var lines = routes();
    var all = list.concat([].concat.apply([], lines.map(function (line) {
      return line.points.map(function (xy) { return { x: xy[0], y: xy[1] }; });
    })));
    // Nothing to draw (a day without routes, a user without sites): no empty box filling the
    // screen; the lists below say why. It comes back when a re-plan or a refresh brings points.
    element.hidden = !all.length;
    if (!all.length) { chart.clear(); return; }
    var width = element.clientWidth, height = element.clientHeight;
    chart.resize();
    if (!width || !height) { chart.clear(); return; }
    var v = view(all, width, height);
    drawTiles(v);
    var axis = { type: "value", show: false, scale: true };
    chart.setOption({
      animation: false,
      grid: { left: 0, right: 0, top: 0, bottom: 0 },
      xAxis: Object.assign({ min: v.x0, max: v.x1 }, axis),
      yAxis: Object.assign({ min: v.y0, max: v.y1, inverse: true }, axis),
      tooltip: { trigger: "item", formatter: function (item) {
        var encode = window.echarts.format.encodeHTML;  // names are data: never HTML
        return encode(item.data.name) + "<br>" + encode(item.data.label);
      } },
      // The points first (series[0], as before the routes), drawn over the lines (z).
      series: [{
        type: "scatter",
        symbolSize: 14,
        z: 3,
        data: list.map(function (p) {
          return {
            value: [p.x, p.y], name: p.name, label: p.label, id: p.id,
            itemStyle: { color: COLOURS[p.state], borderColor: "#fff", borderWidth: 1.5 }
          };
        })
      }].concat(lines.map(function (line) {
        return {
          type: "line", name: line.name, data: line.points, symbol: "none", silent: true, z: 2,
          lineStyle: { color: line.colour, width: 3 }
        };
      }))
    }, true);
  }

  chart.on("click", function (item) {
    if (item.data && item.data.id) { window.location.href = "/console/sites/" + encodeURIComponent(item.data.id); }
  });
  window.addEventListener("resize", draw);
  document.body.addEventListener("htmx:afterSettle", draw);
  draw();
})();

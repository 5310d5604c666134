// LungPortal's slice viewer: one Cornerstone3D stack viewport (CPU rendering), its tools, the
// heatmap overlay and the page's controls. Markup: templates/cases/_viewer.html; data:
// cases/viewer.py (the `viewer-data` JSON). State for tests and styles is mirrored on the root
// as data-slice, data-window-width, data-window-center, data-heatmap and data-ready.
import {
  Enums,
  RenderingEngine,
  imageLoader,
  init as coreInit,
  utilities,
} from '@cornerstonejs/core';
import {
  Enums as ToolEnums,
  PanTool,
  StackScrollTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  addTool,
  init as toolsInit,
} from '@cornerstonejs/tools';

import { SCHEME, imageIdFor, installMetadata, loadImage, registerSlices } from './loader.js';
import './viewer.css';

const PRESETS = {
  lung: { width: 1500, center: -600 },
  mediastinum: { width: 350, center: 50 },
};
// The whole range of 8-bit grey values: what the stored PNG shows as it is.
const GREY_WINDOW = { width: 256, center: 127.5 };
const PAGE_STEP = 5;
const ZOOM_STEP = 1.25;
const PAN_STEP = 24; // CSS pixels per key press

const { MouseBindings } = ToolEnums;

function clamp(value, low, high) {
  return Math.min(high, Math.max(low, value));
}

function initialPosition(data) {
  const count = data.slices.length;
  const asked = Number.parseInt(new URLSearchParams(window.location.search).get('slice') ?? '', 10);
  if (Number.isInteger(asked) && asked >= 1 && asked <= count) return asked;
  if (data.ranked.length) return data.ranked[0];
  return 1;
}

function percent(p) {
  return `${Math.round(p * 100)}%`;
}

class Viewer {
  constructor(root, data) {
    this.root = root;
    this.data = data;
    this.count = data.slices.length;
    this.imageIds = data.slices.map(imageIdFor);
    this.position = initialPosition(data);
    this.window = data.hounsfield ? { ...PRESETS.lung } : { ...GREY_WINDOW };
    this.defaultWindow = { ...this.window };
    this.heatmapOn = true;
    this.opacity = 0.6;
    this.ready = false;
    const el = (role) => root.querySelector(`[data-role="${role}"]`);
    this.el = {
      viewport: el('viewport'),
      overlay: el('overlay'),
      status: el('status'),
      slider: el('slice'),
      sliceOutput: el('slice-output'),
      width: el('window-width'),
      center: el('window-center'),
      reset: el('window-reset'),
      presets: root.querySelectorAll('[data-preset]'),
      heatmapToggle: el('heatmap-toggle'),
      heatmapOpacity: el('heatmap-opacity'),
      heatmapNote: el('heatmap-note'),
      ranked: el('ranked'),
      error: el('error'),
    };
  }

  async start() {
    // Always Cornerstone's CPU rendering: these are single 8-bit 2-D slices, cheap to draw on a
    // canvas, and it works where WebGL does not (headless Chromium with --disable-gpu, old
    // GPUs); placeOverlay relies on its image coordinates.
    coreInit({ rendering: { useCPURendering: true } });
    toolsInit();
    installMetadata();
    imageLoader.registerImageLoader(SCHEME, loadImage);
    registerSlices(this.data.slices, {
      hounsfield: this.data.hounsfield,
      frameOfReference: `lungportal-scan-${this.data.scan}`,
      window: this.defaultWindow,
    });

    const engineId = `lungportal-${this.data.scan}`;
    this.viewportId = 'scan';
    this.engine = new RenderingEngine(engineId);
    this.engine.enableElement({
      viewportId: this.viewportId,
      type: Enums.ViewportType.STACK,
      element: this.el.viewport,
      defaultOptions: { background: [0, 0, 0] },
    });
    this.viewport = this.engine.getViewport(this.viewportId);
    this.setUpTools(engineId);
    this.bindEvents();
    this.renderRanked();
    await this.viewport.setStack(this.imageIds, this.position - 1);
    this.applyWindow();
    this.viewport.render();
    new ResizeObserver(() => this.engine.resize(true, true)).observe(this.el.viewport);
  }

  setUpTools(engineId) {
    [StackScrollTool, PanTool, ZoomTool, WindowLevelTool].forEach((tool) => addTool(tool));
    const group = ToolGroupManager.createToolGroup(`lungportal-${this.data.scan}`);
    [StackScrollTool, PanTool, ZoomTool, WindowLevelTool].forEach((tool) => group.addTool(tool.toolName));
    group.addViewport(this.viewportId, engineId);
    group.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    group.setToolActive(PanTool.toolName, {
      bindings: [{ mouseButton: MouseBindings.Auxiliary }, { numTouchPoints: 2 }],
    });
    group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  }

  bindEvents() {
    const { viewport: element } = this.el;
    element.addEventListener(Enums.Events.STACK_NEW_IMAGE, () => this.onNewImage());
    element.addEventListener(Enums.Events.VOI_MODIFIED, (event) => this.onVoiModified(event));
    element.addEventListener(Enums.Events.CAMERA_MODIFIED, () => this.placeOverlay());
    element.addEventListener(Enums.Events.IMAGE_RENDERED, () => this.onRendered());
    element.addEventListener('keydown', (event) => this.onKey(event));
    element.addEventListener('contextmenu', (event) => event.preventDefault());

    this.el.slider.addEventListener('input', () => this.goTo(Number(this.el.slider.value)));
    for (const input of [this.el.width, this.el.center]) {
      input.addEventListener('input', () => this.onWindowInput());
    }
    this.el.reset.addEventListener('click', () => this.setWindow(this.defaultWindow));
    for (const button of this.el.presets) {
      button.addEventListener('click', () => this.setWindow(PRESETS[button.dataset.preset]));
    }
    this.el.heatmapToggle.addEventListener('change', () => {
      this.heatmapOn = this.el.heatmapToggle.checked;
      this.showOverlay();
    });
    this.el.heatmapOpacity.addEventListener('input', () => {
      this.opacity = Number(this.el.heatmapOpacity.value) / 100;
      this.showOverlay();
    });
    this.el.overlay.addEventListener('load', () => {
      this.placeOverlay();
      this.showOverlay();
    });
  }

  // --- slices --------------------------------------------------------------------------------

  get slice() {
    return this.data.slices[this.position - 1];
  }

  goTo(position) {
    const target = clamp(Math.round(position), 1, this.count);
    if (target === this.viewport.getCurrentImageIdIndex() + 1) return;
    this.viewport.setImageIdIndex(target - 1);
  }

  onNewImage() {
    this.position = this.viewport.getCurrentImageIdIndex() + 1;
    // Keep the reader's window from slice to slice.
    this.applyWindow();
    this.loadOverlay();
    this.updateState();
  }

  renderRanked() {
    const container = this.el.ranked;
    if (!container || !this.data.ranked.length) return;
    container.replaceChildren(
      ...this.data.ranked.map((position, index) => {
        const slice = this.data.slices[position - 1];
        const button = document.createElement('button');
        button.type = 'button';
        button.textContent = `${index + 1}. Slice ${position} (${percent(slice.p_malignant)})`;
        button.addEventListener('click', () => {
          this.goTo(position);
          this.el.viewport.focus();
        });
        return button;
      }),
    );
  }

  // --- window/level --------------------------------------------------------------------------

  setWindow({ width, center }) {
    this.window = { width: Math.max(1, width), center };
    this.applyWindow();
    this.viewport.render();
    this.updateState();
  }

  applyWindow() {
    const { lower, upper } = utilities.windowLevel.toLowHighRange(this.window.width, this.window.center);
    this.viewport.setProperties({ voiRange: { lower, upper } });
  }

  onWindowInput() {
    const width = Number(this.el.width.value);
    const center = Number(this.el.center.value);
    if (this.el.width.value === '' || this.el.center.value === '') return;
    if (!Number.isFinite(width) || !Number.isFinite(center) || width < 1) return;
    this.setWindow({ width, center });
  }

  onVoiModified(event) {
    const range = event.detail?.range;
    if (!range) return;
    const { windowWidth, windowCenter } = utilities.windowLevel.toWindowLevel(range.lower, range.upper);
    const width = Math.round(windowWidth * 10) / 10;
    const center = Math.round(windowCenter * 10) / 10;
    if (width === this.window.width && center === this.window.center) return;
    this.window = { width: Math.max(1, width), center };
    this.updateState();
  }

  // --- camera --------------------------------------------------------------------------------

  zoomBy(factor) {
    this.viewport.setZoom(clamp(this.viewport.getZoom() * factor, 0.25, 20));
    this.viewport.render();
  }

  // As Cornerstone's PanTool does: move the camera against the drag, in world units.
  panBy(dx, dy) {
    const { focalPoint, position } = this.viewport.getCamera();
    const from = this.viewport.canvasToWorld([0, 0]);
    const to = this.viewport.canvasToWorld([dx * PAN_STEP, dy * PAN_STEP]);
    const delta = to.map((value, axis) => value - from[axis]);
    this.viewport.setCamera({
      focalPoint: focalPoint.map((value, axis) => value - delta[axis]),
      position: position?.map((value, axis) => value - delta[axis]),
    });
    this.viewport.render();
  }

  resetView() {
    this.viewport.resetCamera();
    this.viewport.render();
  }

  onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const moves = {
      ArrowUp: -1,
      ArrowDown: 1,
      PageUp: -PAGE_STEP,
      PageDown: PAGE_STEP,
    };
    const pans = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    let handled = true;
    if (event.shiftKey && pans[event.key]) {
      this.panBy(...pans[event.key]);
    } else if (event.key in moves) {
      this.goTo(this.position + moves[event.key]);
    } else if (event.key === 'Home') {
      this.goTo(1);
    } else if (event.key === 'End') {
      this.goTo(this.count);
    } else if (event.key === '+' || event.key === '=') {
      this.zoomBy(ZOOM_STEP);
    } else if (event.key === '-' || event.key === '_') {
      this.zoomBy(1 / ZOOM_STEP);
    } else if (event.key === '0') {
      this.resetView();
    } else {
      handled = false;
    }
    if (handled) event.preventDefault();
  }

  // --- heatmap overlay ---------------------------------------------------------------------

  loadOverlay() {
    const url = this.slice.heatmap;
    const { overlay } = this.el;
    if (!url) {
      overlay.hidden = true;
      overlay.removeAttribute('src');
    } else if (overlay.getAttribute('src') !== url) {
      overlay.hidden = true; // until it has loaded and been placed
      overlay.src = url;
    } else {
      this.placeOverlay();
      this.showOverlay();
    }
  }

  showOverlay() {
    const { overlay } = this.el;
    const has = Boolean(this.slice.heatmap);
    overlay.style.opacity = String(this.opacity);
    overlay.hidden = !(has && this.heatmapOn && overlay.complete && overlay.naturalWidth > 0);
    this.updateState();
  }

  // Lay the overlay over the image exactly, wherever zoom and pan have put it: from the canvas
  // positions of the image's corners. (In Cornerstone's CPU rendering, which this viewer always
  // uses, image coordinates (0, 0) are the first pixel's outer corner and (width, height) the
  // last pixel's.)
  placeOverlay() {
    const { overlay } = this.el;
    const imageId = this.viewport.getCurrentImageId();
    if (!imageId || !overlay.naturalWidth || !this.slice.heatmap || !this.viewport.getImageData()) return;
    const { width, height } = this.slice;
    const toCanvas = (column, row) =>
      this.viewport.worldToCanvas(utilities.imageToWorldCoords(imageId, [column, row]));
    const start = toCanvas(0, 0);
    const end = toCanvas(width, height);
    const scaleX = (end[0] - start[0]) / width;
    const scaleY = (end[1] - start[1]) / height;
    let left = start[0];
    let top = start[1];
    let boxWidth = end[0] - start[0];
    let boxHeight = end[1] - start[1];
    if (overlay.naturalWidth !== width || overlay.naturalHeight !== height) {
      // An older heatmap at the model's input geometry: the slice padded to a centred square.
      const side = Math.max(width, height);
      left -= ((side - width) / 2) * scaleX;
      top -= ((side - height) / 2) * scaleY;
      boxWidth = side * scaleX;
      boxHeight = side * scaleY;
    }
    Object.assign(overlay.style, {
      left: `${left}px`,
      top: `${top}px`,
      width: `${boxWidth}px`,
      height: `${boxHeight}px`,
    });
  }

  // --- state ---------------------------------------------------------------------------------

  onRendered() {
    this.placeOverlay();
    if (!this.ready) {
      this.ready = true;
      this.updateState();
      this.loadOverlay();
    }
  }

  updateState() {
    const { root, el } = this;
    const has = Boolean(this.slice.heatmap);
    const width = Math.round(this.window.width);
    const center = Math.round(this.window.center);
    root.dataset.slice = String(this.position);
    root.dataset.windowWidth = String(width);
    root.dataset.windowCenter = String(center);
    root.dataset.heatmap = has ? (this.heatmapOn && !el.overlay.hidden ? 'on' : 'off') : 'none';
    root.dataset.ready = String(this.ready);
    const label = `Slice ${this.position} of ${this.count}`;
    el.viewport.setAttribute('aria-label', `${label}, window width ${width}, centre ${center}`);
    el.slider.value = String(this.position);
    el.slider.setAttribute('aria-valuetext', label);
    el.sliceOutput.textContent = String(this.position);
    if (document.activeElement !== el.width) el.width.value = String(width);
    if (document.activeElement !== el.center) el.center.value = String(center);
    const p = this.slice.p_malignant;
    const suspicion = p === null || p === undefined ? '' : ` · malignancy ${percent(p)}`;
    el.status.textContent = `${label}${suspicion} · window W ${width} / C ${center}`;
    el.heatmapToggle.disabled = !has;
    el.heatmapOpacity.disabled = !has;
    el.heatmapNote.hidden = has;
  }

  fail(error) {
    this.root.dataset.ready = 'error';
    if (this.el.error) {
      this.el.error.hidden = false;
      this.el.error.textContent = `The viewer could not show this scan (${error.message}).`;
    }
    console.error(error);
  }
}

function main() {
  const root = document.querySelector('[data-viewer]');
  const source = document.getElementById('viewer-data');
  if (!root || !source) return;
  const data = JSON.parse(source.textContent);
  if (!data.slices.length) return;
  const viewer = new Viewer(root, data);
  viewer.start().catch((error) => viewer.fail(error));
}

main();

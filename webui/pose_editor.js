// The pose editor of the Generate tab (a gr.HTML component; webui/pose_editor.py). Its value is the pose as
// OpenPose JSON (the A1111 openpose-editor's format, annotators/pose.py); the server renders the map from it.
// Drag a joint to move it; click a person's joint to select that person for Mirror, Scale and Remove.
const BODY_LIMBS = [[1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10], [1, 11], [11, 12],
  [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17]];
const COLORS = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
  [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
  [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85]];
// Left and right change places when a person is mirrored (body, then the hands themselves).
const MIRROR_PAIRS = [[2, 5], [3, 6], [4, 7], [8, 11], [9, 12], [10, 13], [14, 15], [16, 17]];
const STANDING = [[0.5, 0.18], [0.5, 0.28], [0.4, 0.28], [0.37, 0.42], [0.35, 0.55], [0.6, 0.28], [0.63, 0.42],
  [0.65, 0.55], [0.45, 0.56], [0.45, 0.73], [0.45, 0.9], [0.55, 0.56], [0.55, 0.73], [0.55, 0.9], [0.48, 0.16],
  [0.52, 0.16], [0.46, 0.17], [0.54, 0.17]];
const PARTS = ["pose_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d", "face_keypoints_2d"];

const canvas = element.querySelector("canvas");
const ctx = canvas.getContext("2d");
const status = element.querySelector(".pose-status");
let pose = null;
let selected = 0;
let dragging = null;  // {person, part, index}
const history = [];

function read(text) {
  try {
    const parsed = JSON.parse(text || "null");
    const value = Array.isArray(parsed) ? parsed[0] : parsed;
    if (value && Array.isArray(value.people)) return value;
  } catch (err) { status.textContent = "Not OpenPose JSON: " + err.message; }
  return null;
}

function standing(width, height, dx) {
  return {pose_keypoints_2d: STANDING.flatMap(([x, y]) => [(x + dx) * width, y * height, 1])};
}

function load(text) {
  pose = read(text) || {canvas_width: 512, canvas_height: 512, people: [standing(512, 512, 0)]};
  canvas.width = pose.canvas_width || pose.width || 512;
  canvas.height = pose.canvas_height || pose.height || 512;
  pose.canvas_width = canvas.width;
  pose.canvas_height = canvas.height;
  selected = Math.min(selected, Math.max(0, pose.people.length - 1));
  draw();
}

function points(person, part) {
  const flat = person[part] || [];
  const out = [];
  for (let i = 0; i + 2 < flat.length; i += 3) out.push(flat[i + 2] > 0 ? [flat[i], flat[i + 1]] : null);
  return out;
}

function draw() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  pose.people.forEach((person, p) => {
    const body = points(person, PARTS[0]);
    BODY_LIMBS.forEach(([a, b], i) => {
      if (!body[a] || !body[b]) return;
      ctx.strokeStyle = `rgb(${COLORS[i].map((c) => Math.round(c * 0.6)).join(",")})`;
      ctx.lineWidth = 8;
      ctx.beginPath();
      ctx.moveTo(...body[a]);
      ctx.lineTo(...body[b]);
      ctx.stroke();
    });
    body.forEach((pt, i) => {
      if (!pt) return;
      ctx.fillStyle = `rgb(${COLORS[i].join(",")})`;
      ctx.beginPath();
      ctx.arc(pt[0], pt[1], p === selected ? 6 : 4, 0, 2 * Math.PI);
      ctx.fill();
    });
    PARTS.slice(1).forEach((part) => points(person, part).forEach((pt) => {
      if (!pt) return;
      ctx.fillStyle = part.startsWith("face") ? "#fff" : "#00f";
      ctx.fillRect(pt[0] - 1.5, pt[1] - 1.5, 3, 3);
    }));
  });
  const person = pose.people[selected];
  if (person) {  // the selected person's box, so Mirror, Bigger, Smaller and Remove say whom they change
    const body = points(person, PARTS[0]).filter(Boolean);
    const xs = body.map((p) => p[0]);
    const ys = body.map((p) => p[1]);
    ctx.strokeStyle = "rgba(255,255,255,0.6)";
    ctx.lineWidth = 1;
    ctx.setLineDash([4, 4]);
    ctx.strokeRect(Math.min(...xs) - 10, Math.min(...ys) - 10, Math.max(...xs) - Math.min(...xs) + 20,
                   Math.max(...ys) - Math.min(...ys) + 20);
    ctx.setLineDash([]);
  }
  status.textContent = (pose.people.length ? `${pose.people.length} person(s); person ${selected + 1} selected`
    : "No person: Add person or Reset (a run needs one)") + ` · ${canvas.width}x${canvas.height}`;
}

function commit() {
  props.value = JSON.stringify(pose);
}

function remember() {
  history.push(JSON.stringify(pose));
  if (history.length > 100) history.shift();
}

function at(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
}

function nearest([x, y]) {
  let best = null;
  let bestDistance = 12 * canvas.width / canvas.getBoundingClientRect().width;
  pose.people.forEach((person, p) => PARTS.forEach((part) => points(person, part).forEach((pt, i) => {
    if (!pt) return;
    const distance = Math.hypot(pt[0] - x, pt[1] - y);
    if (distance < bestDistance) { bestDistance = distance; best = {person: p, part, index: i}; }
  })));
  return best;
}

function centre(person) {
  const body = points(person, PARTS[0]).filter(Boolean);
  return [body.reduce((s, p) => s + p[0], 0) / body.length, body.reduce((s, p) => s + p[1], 0) / body.length];
}

function transform(person, fn) {
  PARTS.forEach((part) => {
    const flat = person[part];
    if (!flat) return;
    for (let i = 0; i + 2 < flat.length; i += 3) [flat[i], flat[i + 1]] = fn(flat[i], flat[i + 1]);
  });
}

function mirror(person) {
  const [cx] = centre(person);
  transform(person, (x, y) => [2 * cx - x, y]);
  const body = person[PARTS[0]];
  MIRROR_PAIRS.forEach(([a, b]) => {
    for (let k = 0; k < 3; k++) [body[3 * a + k], body[3 * b + k]] = [body[3 * b + k], body[3 * a + k]];
  });
  [person[PARTS[1]], person[PARTS[2]]] = [person[PARTS[2]], person[PARTS[1]]];
}

const actions = {
  // A new person beside the others (a quarter of the canvas along, wrapping), selected.
  add: () => {
    const shift = [0.25, -0.25, 0.125, -0.125][pose.people.length % 4];
    pose.people.push(standing(canvas.width, canvas.height, shift));
    selected = pose.people.length - 1;
  },
  remove: () => { if (pose.people.length) { pose.people.splice(selected, 1); selected = Math.max(0, selected - 1); } },
  mirror: () => { if (pose.people[selected]) mirror(pose.people[selected]); },
  bigger: () => scale(1.1),
  smaller: () => scale(1 / 1.1),
  reset: () => { pose.people = [standing(canvas.width, canvas.height, 0)]; selected = 0; },
};

function scale(factor) {
  const person = pose.people[selected];
  if (!person) return;
  const [cx, cy] = centre(person);
  transform(person, (x, y) => [cx + (x - cx) * factor, cy + (y - cy) * factor]);
}

element.querySelectorAll("button[data-action]").forEach((button) => button.addEventListener("click", () => {
  const action = button.dataset.action;
  if (action === "undo") {
    if (history.length) { pose = JSON.parse(history.pop()); draw(); commit(); }
    return;
  }
  if (action === "export") {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([JSON.stringify([pose])], {type: "application/json"}));
    link.download = "pose.json";
    link.click();
    return;
  }
  remember();
  actions[action]();
  draw();
  commit();
}));

element.querySelector("input[type=file]").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  const text = await file.text();
  if (!read(text)) {
    status.textContent = `${file.name} is not an OpenPose pose (canvas_width, canvas_height, people)`;
    return;
  }
  remember();
  load(text);
  commit();
  event.target.value = "";
});

canvas.addEventListener("pointerdown", (event) => {
  const hit = nearest(at(event));
  if (!hit) return;
  remember();
  dragging = hit;
  selected = hit.person;
  canvas.setPointerCapture(event.pointerId);
  draw();
});
canvas.addEventListener("pointermove", (event) => {
  if (!dragging) return;
  const [x, y] = at(event);
  const flat = pose.people[dragging.person][dragging.part];
  flat[3 * dragging.index] = Math.max(0, Math.min(canvas.width, x));
  flat[3 * dragging.index + 1] = Math.max(0, Math.min(canvas.height, y));
  draw();
});
canvas.addEventListener("pointerup", () => {
  if (!dragging) return;
  dragging = null;
  commit();
});

watch("value", () => { if (props.value !== JSON.stringify(pose)) load(props.value); });
load(props.value);

--- The emulator's job outputs: URLs and deterministic bytes, so a test can
-- check a download byte for byte without the server storing anything.
local files = {}

files.DEFAULT_SIZE = 16384

local TYPES = {
  mp4 = "video/mp4", png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg",
  webp = "image/webp", gif = "image/gif", mp3 = "audio/mpeg", wav = "audio/wav",
  txt = "text/plain", json = "application/json",
}

function files.content_type(ext)
  return TYPES[ext] or "application/octet-stream"
end

--- URL of output `n` (0-based) of `task_id` under `base` (no trailing slash).
function files.url(base, task_id, n, ext)
  return base .. "/files/" .. task_id .. "/" .. string.format("%d", n) .. "." .. ext
end

--- Split a path `/files/<taskId>/<n>.<ext>`: task id, n (number), ext; or nil.
function files.parse_path(path)
  local id, n, ext = path:match("^/files/([%w_%-]+)/(%d+)%.(%w+)$")
  if not id then return nil end
  return id, tonumber(n), ext:lower()
end

--- The bytes of output `n` of `task_id`: "modkie:<taskId>:<n>\n" repeated,
-- cut to `size` bytes.
function files.content(task_id, n, size)
  local line = "modkie:" .. task_id .. ":" .. string.format("%d", n) .. "\n"
  local copies = math.floor(size / #line) + 1
  return (string.rep(line, copies):sub(1, size))
end

return files

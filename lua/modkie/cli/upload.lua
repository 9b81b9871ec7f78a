--- `modkie upload FILE…`: upload local files to the gateway's upload API and
-- print the URL of each (what a job's input takes), and when it expires.
-- @module modkie.cli.upload

local args = require "modkie.cli.args"
local common = require "modkie.cli.common"
local file = require "modkie.file"
local text = require("modkie.cli.escape").text

local upload_cli = {}

local EXIT = common.EXIT

local UPLOAD = args.command {
  usage = "modkie upload FILE... [--json]",
  about = "Upload local files (images, frames, audio) to the gateway's upload API and\n"
    .. "print one line per file: the file, its URL, and when the URL expires (files\n"
    .. "live about 24 hours). The same bytes are uploaded once per command. Every file\n"
    .. "is checked before anything is sent: it exists, is a readable regular file,\n"
    .. "is not empty, and is at most --max-size bytes. Submit and batch upload the\n"
    .. "files of an input themselves (--set image_url=@still.png).",
  positionals = { "FILE", many = true }, min = 1,
  flags = common.flags({
    { name = "upload-url", value = "nonempty", arg = "URL",
      help = "the upload API's host (default: $MODKIE_UPLOAD_URL, else\nthe gateway)" },
    { name = "max-size", value = "count", arg = "BYTES", help = "the largest file sent (default 104857600)" },
  }, common.JSON, common.GATEWAY),
  footer = "The API key comes from MODKIE_API_KEY. Exit codes: 0 every file uploaded,\n"
    .. "2 a file is missing, unreadable or too large (nothing sent), 3 auth, 4 network.",
}
upload_cli.USAGE = UPLOAD.help

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

function upload_cli.main(argv)
  local opts, perr = args.parse(argv, UPLOAD.spec)
  if not opts then return common.usage("upload", perr) end
  if opts.help then io.stdout:write(UPLOAD.help) return EXIT.ok end
  -- every file checked first: a bad one sends nothing
  local files, problems = {}, {}
  local limit = opts.max_size or 100 * 1024 * 1024
  for i = 1, #opts do
    local f = file.new(opts[i])
    local facts, why = f:probe(limit)
    if facts then files[#files + 1] = f else problems[#problems + 1] = why end
  end
  if #problems > 0 then
    for _, why in ipairs(problems) do io.stderr:write("modkie upload: ", text(why), "\n") end
    io.stderr:write("modkie upload: nothing was uploaded\n")
    return EXIT.usage
  end
  local kok, kerr = common.need_key()
  if not kok then return common.fail(kerr) end
  local client, cerr = common.client(opts, { upload_url = opts.upload_url, max_upload = limit })
  if not client then return common.fail(cerr) end
  local out, code = {}, EXIT.ok
  for _, f in ipairs(files) do
    local url, expires = client:upload(f)
    local facts = f:facts()
    if url then
      if opts.json then
        out[#out + 1] = { path = f.path, url = url, expires_at = expires, size = facts.size, type = facts.mime,
          sha256 = facts.sha256 }
      else
        io.stdout:write(text(f.path), "  ", text(url), "  expires ", iso(expires), "\n")
      end
    else
      if opts.json then
        out[#out + 1] = { path = f.path, error = common.error_json(expires) }
      else
        common.fail(expires, f.path .. ": ")
      end
      if code == EXIT.ok then code = common.exit_for(expires) end
    end
  end
  client:close()
  if opts.json then io.stdout:write(common.json(common.array(out)), "\n") end
  return code
end

return upload_cli

function love.conf(t)
  t.window.title = "modkie in LÖVE"
  t.window.width, t.window.height = 800, 480
end

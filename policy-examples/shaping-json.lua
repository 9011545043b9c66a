-- The traffic-shaping helper with the JSON file next to this policy (the older setup() form).
local kumo = require 'kumo'
local shaping = require 'policy-extras.shaping'

local here = debug.getinfo(1, 'S').source:match('^@(.*/)') or './'
kumo.on('get_egress_path_config', shaping:setup { here .. 'shaping-auth.json' })

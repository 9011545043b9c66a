-- The traffic-shaping helper with the TOML file next to this policy.
local kumo = require 'kumo'
local shaping = require 'policy-extras.shaping'

local here = debug.getinfo(1, 'S').source:match('^@(.*/)') or './'
local shaper = shaping:setup_with_automation {
  extra_files = { here .. 'shaping-auth.toml' },
}
kumo.on('get_egress_path_config', shaper.get_egress_path_config)

-- Drives a real Ardour session headless (ardour7-lua, Dummy backend) with Continuo's VST3
-- on a MIDI track: [Continuo Test Primer] -> [Continuo] -> [Continuo Test Recorder].
-- Two phases, each its own process (ardour7-lua 7.3 crashes restarting the engine after
-- close_session, in Graph::reset_thread_list):
--   CONTINUO_PHASE=create  makes the session, its tempo map, the track and its plugins, and
--                          saves it (with a range marker over the loop, if there is one);
--   CONTINUO_PHASE=play    loads it, rolls, stops, and prints every recorded note event as
--                          "EVENT <timeline sample> <status> <key> <velocity> <cycle start>".
-- Settings come from the environment (scripts/ardour_check.py sets them):
--   CONTINUO_SESSION  the session's folder
--   CONTINUO_BPM      tempo; CONTINUO_METER "3/4" or "4/4"
--   CONTINUO_LOOP     "" or "start_sample end_sample"
--   CONTINUO_SECONDS  how long the transport rolls
--   CONTINUO_ENGAGE   "" to loop from the start, or the seconds to roll before the loop is
--                     engaged (Ardour then locates to the loop start while rolling)
--   CONTINUO_OFF      sample of the primer's note-off

local function env (name, default)
	local v = os.getenv (name)
	if v == nil or v == "" then return default end
	return v
end

local phase    = env ("CONTINUO_PHASE", "create")
local folder   = env ("CONTINUO_SESSION", "/tmp/continuo-ardour")
local bpm      = tonumber (env ("CONTINUO_BPM", "120"))
local num, den = env ("CONTINUO_METER", "4/4"):match ("(%d+)/(%d+)")
num, den = tonumber (num), tonumber (den)
local seconds  = tonumber (env ("CONTINUO_SECONDS", "12"))
local off      = tonumber (env ("CONTINUO_OFF", "48000"))
local loop     = env ("CONTINUO_LOOP", "")
local engage   = tonumber (env ("CONTINUO_ENGAGE", "0"))
local rate     = 48000

local function fail (msg)
	print ("FAIL " .. msg)
	os.exit (1)
end

local function create ()
	local s = create_session (folder, "continuo", rate)
	if not s then fail ("could not create the session in " .. folder) end
	Session = s

	local tm = Temporal.TempoMap.write_copy ()
	tm:set_tempo (Temporal.Tempo (bpm, bpm, 4), Temporal.timepos_t (0))
	tm:set_meter (Temporal.Meter (num, den), Temporal.timepos_t (0))
	Temporal.TempoMap.update (tm)
	tm = nil

	local midi = ARDOUR.DataType ("midi")
	local tracks = s:new_midi_track (ARDOUR.ChanCount (midi, 1), ARDOUR.ChanCount (midi, 1),
		true, ARDOUR.PluginInfo (), nil, nil, 1, "Continuo", ARDOUR.PresentationInfo.max_order,
		ARDOUR.TrackMode.Normal, true, false)
	local track = tracks:front ()
	if not track or track:isnil () then fail ("no MIDI track") end

	local primer = ARDOUR.LuaAPI.new_luaproc (s, "Continuo Test Primer")
	if primer:isnil () then fail ("the primer script is not installed") end
	local continuo = ARDOUR.LuaAPI.new_plugin (s, "Continuo", ARDOUR.PluginType.VST3, "")
	if continuo:isnil () then fail ("Ardour does not list Continuo as a VST3 plugin") end
	local recorder = ARDOUR.LuaAPI.new_luaproc (s, "Continuo Test Recorder")
	if recorder:isnil () then fail ("the recorder script is not installed") end
	track:add_processor_by_index (primer, 0, nil, true)
	track:add_processor_by_index (continuo, 1, nil, true)
	track:add_processor_by_index (recorder, 2, nil, true)
	ARDOUR.LuaAPI.set_processor_param (primer, 0, off)

	if loop ~= "" then
		-- Lua cannot mark a range as the loop: scripts/ardour_check.py turns this range into
		-- the session's auto-loop location in the saved file (what Ardour writes when a user
		-- sets the loop range) before the play phase loads it.
		local a, b = loop:match ("(%d+) (%d+)")
		s:locations ():add_range (Temporal.timepos_t (tonumber (a)), Temporal.timepos_t (tonumber (b)))
	end
	s:save_state ("", false, false, false, false, false)
	close_session ()
	print ("CREATED")
end

local function play ()
	local s = load_session (folder, "continuo")
	if not s then fail ("could not load the session in " .. folder) end
	Session = s
	local route = s:route_by_name ("Continuo")
	if route:isnil () then fail ("the loaded session has no Continuo track") end
	local n = 0
	while true do
		local p = route:nth_plugin (n)
		if p:isnil () then break end
		print ("PLUGIN " .. n .. " " .. p:name ())
		n = n + 1
	end
	local recorder = route:nth_plugin (2)
	if recorder:isnil () then fail ("the loaded track lost its plugins") end

	if loop ~= "" then
		local l = s:locations ():auto_loop_location ()
		if not l then fail ("the session has no loop range") end
		print (string.format ("LOOP %d %d", l:start ():samples (), l:_end ():samples ()))
	end
	s:goto_start (false)
	ARDOUR.LuaAPI.usleep (500000)
	if loop ~= "" and engage == 0 then
		s:request_play_loop (true, true)
	end
	s:request_roll (ARDOUR.TransportRequestSource.TRS_UI)
	if loop ~= "" and engage > 0 then
		ARDOUR.LuaAPI.usleep (math.floor (engage * 1000000))
		s:request_play_loop (true, true)
		ARDOUR.LuaAPI.usleep (math.floor ((seconds - engage) * 1000000))
	else
		ARDOUR.LuaAPI.usleep (math.floor (seconds * 1000000))
	end
	s:request_stop (false, false, ARDOUR.TransportRequestSource.TRS_UI)
	ARDOUR.LuaAPI.usleep (500000)

	local ints = recorder:to_insert ():plugin (0):to_luaproc ():shmem ():to_int (0):array ()
	local count = ints[1]
	print ("EVENTS " .. count)
	for i = 0, count - 1 do
		local b = 2 + i * 5
		print (string.format ("EVENT %d %d %d %d %d", ints[b], ints[b + 1], ints[b + 2], ints[b + 3], ints[b + 4]))
	end
	close_session ()
	print ("DONE")
end

AudioEngine:set_backend ("None (Dummy)", "", "")
if phase == "create" then create () else play () end

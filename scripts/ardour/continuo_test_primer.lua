ardour {
	["type"]    = "dsp",
	name        = "Continuo Test Primer",
	category    = "Utility",
	license     = "ISC",
	author      = "Continuo",
	description = [[Plays a C-major triad (C4 E4 G4) from timeline sample 0 to the sample in
its parameter, every time the transport passes them (so on every pass of a loop). Used by
scripts/ardour_check.py to prime Continuo inside a real Ardour session.]]
}

function dsp_ioconfig ()
	return { { midi_in = 1, midi_out = 1, audio_in = -1, audio_out = -1 } }
end

function dsp_params ()
	return {
		{ ["type"] = "input", name = "Off sample", min = 1, max = 10000000, default = 48000, integer = true },
	}
end

local triad = { 60, 64, 67 }

-- Timeline samples [pos, pos + n) of this cycle hold `at`: its 1-based offset in the cycle.
local function offset_of (at, pos, n)
	if at >= pos and at < pos + n then return at - pos + 1 end
	return nil
end

function dsp_run (_, _, n_samples)
	assert (type (midiout) == "table")
	local m = 1
	-- What arrives at the track's input (nothing, on the Dummy backend) passes on.
	for _, e in pairs (midiin) do
		midiout[m] = e
		m = m + 1
	end
	if not Session:transport_rolling () then return end
	local pos = Session:transport_sample ()
	-- The triad's note-ons (or note-offs) if timeline sample `at` falls in this cycle.
	local function triad_at (at, status, velocity)
		local t = offset_of (at, pos, n_samples)
		if not t then return end
		for _, key in ipairs (triad) do
			midiout[m] = { time = t, data = { status, key, velocity } }
			m = m + 1
		end
	end
	triad_at (0, 0x90, 100)
	triad_at (CtrlPorts:array ()[1], 0x80, 0)
end

ardour {
	["type"]    = "dsp",
	name        = "Continuo Test Recorder",
	category    = "Utility",
	license     = "ISC",
	author      = "Continuo",
	description = [[Writes every note-on and note-off that reaches it, with its timeline sample,
(while rolling or not) into shared memory that the session script reads (scripts/ardour/session.lua). Passes MIDI on.]]
}

-- Shared memory: int 0 = number of events; then 5 ints per event:
-- timeline sample, status byte, key, velocity, cycle start sample.
local max_events = 20000
local ints_per_event = 5

function dsp_ioconfig ()
	return { { midi_in = 1, midi_out = 1, audio_in = -1, audio_out = -1 } }
end

function dsp_init (rate)
	self:shmem ():allocate (1 + max_events * ints_per_event)
	self:shmem ():clear ()
end

function dsp_run (_, _, n_samples)
	assert (type (midiout) == "table")
	local shm = self:shmem ()
	local ints = shm:to_int (0):array ()
	local pos = Session:transport_sample ()
	local m = 1
	for _, e in pairs (midiin) do
		midiout[m] = e
		m = m + 1
		local d = e["data"]
		local kind = d[1] & 0xf0
		if kind == 0x90 or kind == 0x80 then
			local count = ints[1]
			if count < max_events then
				local base = 2 + count * ints_per_event
				ints[base] = pos + e["time"] - 1
				ints[base + 1] = d[1]
				ints[base + 2] = d[2]
				ints[base + 3] = d[3]
				ints[base + 4] = pos
				ints[1] = count + 1
			end
		end
	end
end

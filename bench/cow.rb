# frozen_string_literal: true

# Measures how much memory divvy's workers share with the master
# copy-on-write, with and without the heap compaction divvy runs before
# the first fork (DIVVY_COMPACT=0 turns it off):
#
#   ruby bench/cow.rb
#
# The master builds a heap like an application's (many small strings,
# arrays and hashes, with garbage in between), then 4 workers each perform
# items that allocate and trigger GC; each worker reports its proportional
# set size (PSS) and private dirty memory from /proc/self/smaps_rollup.

require 'rbconfig'

if ARGV.first == 'measure'
  $LOAD_PATH.unshift(File.expand_path('../lib', __dir__))
  require 'divvy'

  KEPT = Array.new(300_000) { |i| i.even? ? "string #{i}" * 2 : { id: i, name: "n#{i}" } }
  300_000.times { |i| "garbage #{i}" } # leaves holes for compaction to close

  # Each worker allocates a little per item; the last item of each reports.
  class Touch
    include Divvy::Parallelizable

    def dispatch = 40.times { |i| yield i }

    def perform(_)
      Array.new(20_000) { |i| "temp #{i}" }
      GC.start
      rollup = File.read('/proc/self/smaps_rollup')
      [rollup[/^Pss:\s+(\d+)/, 1].to_i, rollup[/^Private_Dirty:\s+(\d+)/, 1].to_i]
    end

    def completed(result, index)
      @last = result if index >= 36
    end

    attr_reader :last
  end

  task = Touch.new
  Divvy.map(1..0) {} # loads everything a run needs before measuring
  Divvy::Master.new(task, 4).run
  puts task.last.join(' ')
  exit
end

results = { 'with compaction' => {}, 'without (DIVVY_COMPACT=0)' => { 'DIVVY_COMPACT' => '0' } }.map do |name, env|
  samples = Array.new(3) { IO.popen(env, [RbConfig.ruby, __FILE__, 'measure'], &:read).split.map(&:to_i) }
  pss, private_dirty = samples.transpose.map { |values| values.sort[1] }
  [name, pss, private_dirty]
end

puts '| master heap compacted before fork | worker PSS (MB) | worker private dirty (MB) |'
puts '| --- | ---: | ---: |'
results.each do |name, pss, dirty|
  puts format('| %<name>s | %<pss>.1f | %<dirty>.1f |', name: name, pss: pss / 1024.0, dirty: dirty / 1024.0)
end

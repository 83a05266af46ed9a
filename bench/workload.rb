# frozen_string_literal: true

# Runs one benchmark workload with one runner and prints its measurements
# as JSON: `ruby bench/workload.rb RUNNER WORKLOAD [ITEMS]` (ITEMS only for
# the memory workload).
#
# RUNNER is divvy, parallel (the parallel gem), ruby_pool (bench/ruby_pool.rb)
# or marshal: no workers, one process making each item's Marshal round trip
# itself (the yardstick of the tiny workload).

require 'json'

runner, workload, count = ARGV
$LOAD_PATH.unshift(File.expand_path('../lib', __dir__))
require_relative 'ruby_pool'
require 'divvy'
require 'parallel'

# Each workload: how many workers, a producer of items (a lambda that
# returns the next item, nil at the end, so every runner streams them the
# same way) and what perform does with one.
MEGABYTE = 'x' * (1024 * 1024)

def counter(limit, &make)
  made = 0
  lambda do
    next nil if made >= limit

    made += 1
    make ? make.call(made - 1) : made - 1
  end
end

WORKLOADS = {
  'tiny' => { workers: 2, items: -> { counter(200_000) }, perform: ->(_) {} },
  'latency' => { workers: 50, items: -> { counter(500) }, perform: ->(_) { sleep 0.01 } },
  'skew' => { workers: 10, items: -> { counter(1010) { |i| i < 10 ? 1.0 : 0.001 } },
              perform: ->(seconds) { sleep seconds } },
  'payload' => { workers: 2, items: -> { counter(500) { MEGABYTE.dup } }, perform: ->(blob) { blob.bytesize } },
  'boot' => { workers: 100, items: -> { counter(100) }, perform: ->(_) {} },
  'startup' => { workers: 50, items: -> { counter(0) }, perform: ->(_) {} },
  'memory' => { workers: 2, items: -> { counter(Integer(count)) }, perform: ->(_) {} }
}.freeze

spec = WORKLOADS.fetch(workload)
perform = spec[:perform]
items = spec[:items].call

# A divvy task over the workload's items.
class BenchTask
  include Divvy::Parallelizable

  def initialize(items, perform)
    @items = items
    @perform = perform
  end

  def dispatch
    while (item = @items.call)
      yield item
    end
  end

  def perform(item)
    @perform.call(item)
  end
end

GC.start
started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
case runner
when 'divvy'
  Divvy::Master.new(BenchTask.new(items, perform), spec[:workers]).run
when 'parallel'
  # The parallel gem streams from a lambda that returns Parallel::Stop at the end.
  source = -> { items.call || Parallel::Stop }
  Parallel.each(source, in_processes: spec[:workers]) { |item| perform.call(item) }
when 'ruby_pool'
  RubyPool.new(spec[:workers]) { |item| perform.call(item) }.run(items)
when 'marshal'
  while (item = items.call)
    perform.call(Marshal.load(Marshal.dump(item)))
  end
else
  abort "unknown runner #{runner}"
end
seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
peak_rss_kb = File.read('/proc/self/status')[/VmHWM:\s+(\d+)/, 1].to_i
puts JSON.generate(seconds: seconds, peak_rss_kb: peak_rss_kb)

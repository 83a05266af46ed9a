# frozen_string_literal: true

# Runs every benchmark workload with divvy, the parallel gem and a minimal
# pure-Ruby pool, alternating them, and prints a table of medians and
# ratios; writes it with a description of the machine to bench/RESULTS.md.
#
#   ruby bench/run.rb [REPETITIONS [ROW...]]      (rake bench)
#
# ROW names rows to run instead of all of them (see ROWS; a name also
# stands for every row named after it and `_`, so `map` runs the map_
# rows); a run of some rows prints its table and leaves bench/RESULTS.md
# as it is.

require 'etc'
require 'json'
require 'open3'
require 'rbconfig'
require_relative 'startup'
require_relative '../lib/divvy/processors'

BENCH = __dir__
RUNNERS = %w[divvy parallel ruby_pool].freeze
REPETITIONS = Integer(ARGV.fetch(0, 5))
# What the pure-Ruby pool column shows for the map rows: the pool gathers no results.
NO_POOL = '-'

# Runs one workload once with one runner; returns its measurements.
def measure(runner, workload, *args)
  command = [RbConfig.ruby, File.join(BENCH, 'workload.rb'), runner, workload, *args.map(&:to_s)]
  stdout, stderr, status = Open3.capture3(*command)
  raise "#{command.join(' ')} failed: #{stderr}" unless status.success?

  JSON.parse(stdout.lines.last, symbolize_names: true)
end

# Runs a workload REPETITIONS times per runner, rotating which runner goes
# first; returns the median seconds and peak RSS per runner.
def compare(workload, *args, runners: RUNNERS, repetitions: REPETITIONS)
  samples = Hash.new { |hash, key| hash[key] = [] }
  repetitions.times do |round|
    runners.rotate(round).each { |runner| samples[runner] << measure(runner, workload, *args) }
  end
  samples.transform_values do |runs|
    { seconds: median(runs.map { |run| run[:seconds] }), peak_rss_kb: runs.map { |run| run[:peak_rss_kb] }.max }
  end
end

def median(values)
  sorted = values.sort
  middle = sorted.size / 2
  sorted.size.odd? ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2.0
end

def fmt(number, digits = 2)
  format("%.#{digits}f", number)
end

def target(met)
  met ? 'met' : 'NOT MET'
end

# The rows of the table, in order, by the name that selects them; each
# measures its workloads and returns [workload, values by runner, ratio, target].
ROWS = {
  'tiny' => lambda do
    tiny = compare('tiny', runners: RUNNERS + ['marshal'])
    rate = tiny.transform_values { |result| 200_000 / result[:seconds] }
    ratio = rate['divvy'] / rate['parallel']
    round_trips = rate['divvy'] / rate['marshal']
    ['tiny: 200,000 empty items, 2 workers (items/s)', rate.values_at(*RUNNERS).map { |v| fmt(v, 0) },
     "#{fmt(ratio, 1)}x parallel; #{fmt(round_trips, 2)}x one process's Marshal round trips " \
     "(#{fmt(rate['marshal'], 0)}/s)",
     ">= 10x parallel: #{target(ratio >= 10)}; moonshot >= 0.5x round trips: #{target(round_trips >= 0.5)}"]
  end,
  'tiny_joblog' => lambda do
    rate = compare('tiny', runners: %w[divvy divvy_joblog]).transform_values { |result| 200_000 / result[:seconds] }
    cost = 1 - (rate['divvy_joblog'] / rate['divvy'])
    ['tiny with --joblog: the tiny workload, each item recorded in a job log (items/s)',
     [fmt(rate['divvy_joblog'], 0), NO_POOL, NO_POOL],
     "#{fmt(cost * 100, 1)}% slower than without the log (#{fmt(rate['divvy'], 0)}/s in this row's runs)",
     "costs < 10%: #{target(cost < 0.1)}"]
  end,
  'latency' => lambda do
    startup = compare('startup', runners: ['divvy'])['divvy'][:seconds]
    wall = compare('latency').transform_values { |result| result[:seconds] }
    allowed = (0.1 * 1.1) + startup
    ['latency: 500 x 10 ms, 50 workers (s; ideal 0.1)', wall.values_at(*RUNNERS).map { |v| fmt(v, 3) },
     "startup of 50 workers #{fmt(startup, 3)} s",
     "<= 1.1 x ideal + startup (#{fmt(allowed, 3)}): #{target(wall['divvy'] <= allowed)}"]
  end,
  'skew' => lambda do
    skew = compare('skew').transform_values { |result| result[:seconds] }
    ['skew: 10 x 1 s then 1,000 x 1 ms, 10 workers (s; ideal 1.1)', skew.values_at(*RUNNERS).map { |v| fmt(v, 3) },
     "#{fmt(((skew['divvy'] / 1.1) - 1) * 100, 1)}% over ideal", "within 10%: #{target(skew['divvy'] <= 1.21)}"]
  end,
  'payload' => lambda do
    payload = compare('payload').transform_values { |result| 500 / result[:seconds] }
    ratio = payload['divvy'] / payload['parallel']
    ['payload: 500 x 1 MB, 2 workers (MB/s)', payload.values_at(*RUNNERS).map { |v| fmt(v, 0) },
     "#{fmt(ratio, 2)}x parallel", ">= 2x parallel: #{target(ratio >= 2)}"]
  end,
  'boot' => lambda do
    boot = compare('boot').transform_values { |result| result[:seconds] }
    ['boot: 100 workers, 100 empty items (s)', boot.values_at(*RUNNERS).map { |v| fmt(v, 3) },
     "#{fmt(boot['divvy'] / boot['parallel'], 2)}x parallel's time",
     "no worse: #{target(boot['divvy'] <= boot['parallel'])}"]
  end,
  'startup' => lambda do
    launch = Startup.measure(REPETITIONS * 6)
    ['start-up: `divvy -n 2`, 10 empty items, whole command (ms)',
     launch.values_at('divvy', 'parallel', 'ruby_pool').map { |v| fmt(v, 1) },
     "#{fmt(launch['divvy'] / launch['parallel'], 2)}x parallel's time; " \
     "#{fmt(launch['divvy_no_wrapper'], 1)} ms without the RubyGems wrapper (`ruby exe/divvy`)",
     "no worse: #{target(launch['divvy'] <= launch['parallel'])}; without the wrapper: " \
     "#{target(launch['divvy_no_wrapper'] <= launch['parallel'])}"]
  end,
  'memory' => lambda do
    small = compare('memory', 500_000, repetitions: 1)
    large = compare('memory', 5_000_000, runners: ['divvy'], repetitions: 1)['divvy']
    rss = small.transform_values { |result| result[:peak_rss_kb] / 1024.0 }
    growth = large[:peak_rss_kb].to_f / small['divvy'][:peak_rss_kb]
    ['memory: master peak RSS, 500,000 items (MB)', rss.values_at(*RUNNERS).map { |v| fmt(v, 1) },
     "5,000,000 items: #{fmt(large[:peak_rss_kb] / 1024.0, 1)} MB (#{fmt(growth, 2)}x)",
     "flat and no worse: #{target(growth <= 1.25 && rss['divvy'] <= rss['parallel'])}"]
  end,
  'map_tiny' => lambda do
    rate = compare('map_tiny', runners: %w[divvy parallel divvy_task]).transform_values do |result|
      200_000 / result[:seconds]
    end
    task_share = rate['divvy'] / rate['divvy_task']
    ratio = rate['divvy'] / rate['parallel']
    ['map tiny: `i * 2` over 200,000 items, 2 workers (items/s)',
     [fmt(rate['divvy'], 0), fmt(rate['parallel'], 0), NO_POOL],
     "#{fmt(task_share, 2)}x the task path (#{fmt(rate['divvy_task'], 0)}/s); #{fmt(ratio, 1)}x parallel",
     ">= 0.75x the task path: #{target(task_share >= 0.75)}; >= 15x parallel: #{target(ratio >= 15)}"]
  end,
  'map_strings' => lambda do
    rate = compare('map_strings', runners: %w[divvy parallel]).transform_values { |result| 200_000 / result[:seconds] }
    ratio = rate['divvy'] / rate['parallel']
    ["map short strings: `\"item-\#{i}\" * 10` over 200,000 items, 2 workers (items/s)",
     [fmt(rate['divvy'], 0), fmt(rate['parallel'], 0), NO_POOL],
     "#{fmt(ratio, 1)}x parallel", ">= 10x parallel: #{target(ratio >= 10)}"]
  end,
  'map_large' => lambda do
    rate = compare('map_large', runners: %w[divvy parallel]).transform_values { |result| 300 / result[:seconds] }
    ratio = rate['divvy'] / rate['parallel']
    ['map large: 300 results of 1 MB, 2 workers (MB/s)', [fmt(rate['divvy'], 0), fmt(rate['parallel'], 0), NO_POOL],
     "#{fmt(ratio, 2)}x parallel", ">= 2x parallel: #{target(ratio >= 2)}"]
  end,
  'map_cpu' => lambda do
    runners = %w[divvy parallel serial split]
    rate = compare('map_cpu', runners: runners).transform_values { |result| 6_000 / result[:seconds] }
    speedup = rate.transform_values { |value| value / rate['serial'] }
    ideal = [2, Divvy.processors].min
    ['map CPU-bound: 6,000 items of 200 SHA-256 rounds, 2 workers (items/s)',
     [fmt(rate['divvy'], 0), fmt(rate['parallel'], 0), NO_POOL],
     "#{fmt(speedup['divvy'], 2)}x a serial loop (#{fmt(rate['serial'], 0)}/s; parallel " \
     "#{fmt(speedup['parallel'], 2)}x; 2 forks sharing the items, nothing sent back: " \
     "#{fmt(speedup['split'], 2)}x); ideal #{ideal}x: 2 workers, Divvy.processors #{Divvy.processors}",
     "within 5% of the ideal (>= #{fmt(ideal * 0.95, 2)}x): #{target(speedup['divvy'] >= ideal * 0.95)}"]
  end
}.freeze

# The names of the rows that ROW arguments select, in table order: a row by
# its name, or every row whose name starts with the argument and `_`; every
# row without arguments.
def selected_rows(arguments)
  return ROWS.keys if arguments.empty?

  selected = arguments.to_h do |argument|
    [argument, ROWS.keys.select { |name| name == argument || name.start_with?("#{argument}_") }]
  end
  unknown = selected.select { |_, names| names.empty? }.keys
  abort "bench/run.rb: no row #{unknown.join(', ')}; rows: #{ROWS.keys.join(' ')}, map" unless unknown.empty?
  ROWS.keys & selected.values.flatten
end

names = selected_rows(ARGV.drop(1))
rows = names.map { |name| ROWS.fetch(name).call }

cpu = File.read('/proc/cpuinfo')[/model name\s*:\s*(.+)/, 1]
parallel_version = Gem::Specification.find_by_name('parallel').version
machine = "#{Etc.nprocessors} CPUs (#{cpu}), #{RUBY_DESCRIPTION}, parallel #{parallel_version}, " \
          "#{REPETITIONS} repetitions (medians), #{Time.now.utc.strftime('%Y-%m-%d')}"
table = ['| workload | divvy | parallel gem | pure-Ruby pool | ratio | target |',
         '| --- | ---: | ---: | ---: | --- | --- |']
rows.each do |name, values, ratio_text, verdict|
  table << "| #{name} | #{values.join(' | ')} | #{ratio_text} | #{verdict} |"
end

report = <<~MARKDOWN
  # Benchmark results

  Produced by `rake bench` (`ruby bench/run.rb`): each workload runs divvy,
  the `parallel` gem (`Parallel.each(..., in_processes: n)`, streaming from
  a lambda) and the minimal fork-and-pipe pool in `bench/ruby_pool.rb`,
  alternating, in fresh processes; the table shows medians (`#{NO_POOL}`:
  a runner the row does not run). Time is measured
  inside each process around the run, forks included. The tiny workload
  also runs in one process without workers, making each item's
  `Marshal.load(Marshal.dump(item))` round trip, as a yardstick; the row
  under it runs divvy on the same items with and without `joblog:`
  (alternating), and shows what writing the job log costs. The
  start-up row times whole commands from spawn to exit instead,
  #{REPETITIONS * 6} rounds (`bench/startup.rb` says which).

  The map rows run `Divvy.map(0...n, workers: 2) { ... }` against
  `Parallel.map(0...n, in_processes: 2) { ... }` (the pure-Ruby pool gathers
  no results: `#{NO_POOL}`), and each run checks every result against the
  block's own after the clock stops. The tiny map row also runs the task
  path: a task class whose `dispatch` yields the same Range and whose
  `perform` runs the block, with no `completed` hook, so no result crosses
  the pipes. The CPU-bound row also runs the block in a serial loop in one
  process, and in 2 forked processes that share the items out and send
  nothing back, which shows what the shared machine allowed at that time;
  its ideal speed-up is the number of workers or of CPUs
  (`Divvy.processors`), whichever is smaller.

  Machine: #{machine}.

  #{table.join("\n")}
MARKDOWN
puts report
if names == ROWS.keys
  File.write(File.join(BENCH, 'RESULTS.md'), report)
else
  warn 'bench/run.rb: some rows only; bench/RESULTS.md left as it is'
end

# frozen_string_literal: true

# The start-up row of `rake bench`: whole commands timed from spawn to
# exit, 10 empty items on 2 workers, as a user starts them:
#
# - divvy: the `divvy` command through the wrapper RubyGems writes into
#   GEM_HOME/bin at `gem install` (the checkout's build, packed as a
#   precompiled gem and installed into tmp/bench/gem_home);
# - divvy, no wrapper: the same command as `ruby exe/divvy`, which shows
#   what the RubyGems wrapper costs;
# - parallel: `ruby bench/startup/parallel.rb`, the parallel gem from
#   Debian's ruby-parallel, which needs no gem activation;
# - ruby_pool: `ruby bench/startup/ruby_pool.rb`.
#
#   ruby bench/startup.rb [ROUNDS]     (prints medians in ms as JSON)

require 'fileutils'
require 'json'
require 'rbconfig'

# Installs the checkout as a gem and times the start-up commands.
module Startup
  ROOT = File.expand_path('..', __dir__)
  GEM_HOME = File.join(ROOT, 'tmp', 'bench', 'gem_home')

  module_function

  # Packs the checkout's build for this Ruby (lib/divvy/X.Y/divvy.so, from
  # `rake compile`) as a precompiled gem and installs it into GEM_HOME, so
  # that `divvy` is a RubyGems wrapper as after `gem install divvy`.
  def install_checkout
    FileUtils.rm_rf(GEM_HOME)
    FileUtils.mkdir_p(GEM_HOME)
    gem_file = File.join(GEM_HOME, 'divvy.gem')
    abi = RUBY_VERSION[/\A\d+\.\d+/]
    Dir.chdir(ROOT) do
      system({ 'DIVVY_NATIVE_RUBIES' => abi }, 'gem', 'build', '-q', 'divvy.gemspec', '-o', gem_file,
             out: File::NULL, exception: true)
    end
    system({ 'GEM_HOME' => GEM_HOME, 'GEM_PATH' => GEM_HOME }, 'gem', 'install', '-q', '--local', '--no-document',
           '--install-dir', GEM_HOME, gem_file, out: File::NULL, exception: true)
  end

  # The commands, by runner: [environment, command...].
  def commands
    task = File.join(__dir__, 'startup', 'task.rb')
    gems = { 'GEM_HOME' => GEM_HOME, 'GEM_PATH' => GEM_HOME, 'RUBYLIB' => nil, 'RUBYOPT' => nil }
    {
      'divvy' => [gems, File.join(GEM_HOME, 'bin', 'divvy'), '-n', '2', task],
      'divvy_no_wrapper' => [{ 'RUBYLIB' => File.join(ROOT, 'lib') }, RbConfig.ruby, File.join(ROOT, 'exe', 'divvy'),
                             '-n', '2', task],
      'parallel' => [{}, RbConfig.ruby, File.join(__dir__, 'startup', 'parallel.rb')],
      'ruby_pool' => [{}, RbConfig.ruby, File.join(__dir__, 'startup', 'ruby_pool.rb')]
    }
  end

  # Runs one command; returns its wall time in ms.
  def time(env, *command)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    system(env, *command, out: File::NULL, exception: true)
    (Process.clock_gettime(Process::CLOCK_MONOTONIC) - started) * 1000
  end

  # Runs every command `rounds` times, rotating which goes first; returns
  # the median ms by runner.
  def measure(rounds)
    install_checkout
    runs = commands.to_a
    runs.each { |_, (env, *command)| time(env, *command) } # warms the page cache
    samples = rounds.times.flat_map do |round|
      runs.rotate(round).map { |name, (env, *command)| [name, time(env, *command)] }
    end
    samples.group_by(&:first).transform_values { |pairs| median(pairs.map(&:last)) }
  end

  def median(values)
    values.sort[values.size / 2]
  end
end

puts JSON.generate(Startup.measure(Integer(ARGV.fetch(0, 30)))) if $PROGRAM_NAME == __FILE__

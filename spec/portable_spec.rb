# frozen_string_literal: true

# Which operating-system layer the compiled extension uses: the Linux calls,
# or their portable fallbacks (`rake compile PORTABLE=1`, what macOS runs).
# CI runs the whole suite on both builds; this spec makes sure each run
# tested the build it says, by a trace only the portable build leaves: the
# thread a worker watches its master with (Linux has the kernel do that).
RSpec.describe 'the operating-system layer under test' do
  let(:portable) { ENV['PORTABLE'] == '1' }

  it 'is the portable one under PORTABLE=1 and the Linux one otherwise' do
    # The watch thread names itself once it runs: look for up to 2 seconds.
    result = ruby_code(<<~RUBY)
      require 'divvy'
      names = Divvy.map([1], workers: 1) do
        threads = []
        20.times do
          threads = Dir['/proc/self/task/*/comm'].map { |file| File.read(file).chomp }
          break if threads.include?('divvy-parent-wa')

          sleep 0.1
        end
        threads
      end
      puts names.first.sort
    RUBY
    expect(result.status).to be_success, result.stderr
    threads = result.stdout.lines(chomp: true)
    expect(threads).not_to be_empty
    if portable
      expect(threads).to include('divvy-parent-wa')
    else
      expect(threads).not_to include('divvy-parent-wa'), 'a portable build: run it as PORTABLE=1 rspec'
    end
  end

  # A process that has ever run a second thread forks children whose malloc
  # takes locks (glibc stays in its multi-threaded mode): CPU-bound items
  # ran about 5% slower. So on Linux the master watches its forks with a
  # kernel timer, and the job log's writer thread starts once every worker
  # has; the portable build has a timer thread. (Ruby 3.3 runs a timer
  # thread of its own in every process: the master's threads are compared
  # with those it had before the run.)
  it 'forks workers from a master that runs no thread of its own on Linux, job log or not' do
    Dir.mktmpdir do |dir|
      result = ruby_code(<<~RUBY)
        require 'divvy'
        def threads = Dir['/proc/self/task/*/comm'].map { |file| File.read(file).chomp }.sort
        # Records the master's threads right before each fork.
        class Threads
          include Divvy::Parallelizable
          attr_reader :seen
          def initialize = @seen = []
          def dispatch = 6.times { |i| yield i }
          def perform(_) = nil
          def before_fork(_) = @seen << threads
        end
        p threads
        [{}, { joblog: '#{dir}/log' }].each do |options|
          task = Threads.new
          Divvy::Master.new(task, 3, **options).run
          p(*task.seen.uniq)
        end
      RUBY
      expect(result.status).to be_success, result.stderr
      before, *seen = result.stdout.lines.map { |line| eval(line) } # rubocop:disable Security/Eval
      expected = portable ? (before + ['divvy-timer']).sort : before
      expect(seen).to eq([expected, expected])
      expect(File.readlines(File.join(dir, 'log')).size).to eq(7)
    end
  end
end

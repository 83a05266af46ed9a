# frozen_string_literal: true

# A task whose script wraps Process.fork as gems do (ActiveSupport's fork
# tracker, for one), so that a spec can make something happen in a new
# worker before its fork returns.
module ForkWrapper
  # Runs `divvy -n 2` in `dir` on 10 items (each prints `done I`) with
  # Process.fork wrapped: the first worker runs the Ruby code `in_child`
  # before its fork returns. Returns the Result.
  def divvy_with_fork_wrapper(dir, in_child)
    divvy('-n', 2, write_script(dir, 'fork_wrapper.rb', wrapper(in_child) + ITEMS), chdir: dir)
  end

  # Expects the run of divvy_with_fork_wrapper to have performed each item
  # once, in one run, exit 0, without a panic.
  def expect_each_item_once(result)
    stderr = result.stderr
    expect(result.exitstatus).to eq(0), stderr
    expect(result.stdout.lines.sort).to eq(DONE), stderr
    expect(stderr).not_to include('panicked')
    expect(stderr.scan(/^divvy: \d+ performed/)).to eq(['divvy: 10 performed']), stderr
  end

  DONE = (0...10).map { |i| "done #{i}\n" }.sort.freeze

  ITEMS = <<~RUBY
    class Items
      include Divvy::Parallelizable
      def dispatch = 10.times { |i| yield i }
      def perform(i) = puts("done \#{i}")
    end
  RUBY

  private

  def wrapper(in_child)
    <<~RUBY
      Process.singleton_class.prepend(Module.new do
        def fork(*)
          pid = super
          if pid.nil? && !File.exist?('wrapped')
            File.write('wrapped', '')
            #{in_child}
          end
          pid
        end
      end)
    RUBY
  end
end

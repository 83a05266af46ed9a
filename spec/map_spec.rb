# frozen_string_literal: true

require 'divvy'

# Divvy.map and Divvy.each as a parallel-gem user expects them: Ctrl-C
# getting past a plain `rescue`.
RSpec.describe 'Divvy.map and Divvy.each' do
  # Starts Ruby `code` in its own process group (as a terminal would), with
  # OUT=dir in its environment and its output in dir/stdout and dir/stderr.
  # Returns the pid.
  def spawn_ruby(code, dir)
    spawn(spec_env('OUT' => dir), 'ruby', '-e', code,
          out: File.join(dir, 'stdout'), err: File.join(dir, 'stderr'), pgroup: true, chdir: ROOT)
  end

  describe 'Ctrl-C' do
    it 'gets past a plain rescue around Divvy.map and ends the script by SIGINT' do
      Dir.mktmpdir do |dir|
        pid = spawn_ruby(<<~RUBY, dir)
          require 'divvy'
          begin
            Divvy.map((1..), workers: 2) { |i| File.write(File.join(ENV.fetch('OUT'), 'busy'), '') if i == 20; sleep 0.01 }
          rescue => e
            puts "swallowed \#{e.class}"
          end
          puts 'went on'
        RUBY
        eventually { File.exist?(File.join(dir, 'busy')) }
        Process.kill(:INT, -pid)
        expect(wait_for(pid).termsig).to eq(Signal.list['INT'])
        expect(File.read(File.join(dir, 'stdout'))).to eq('')
        expect(File.read(File.join(dir, 'stderr')))
          .to match(/stopped by SIGINT after the items in flight finished: .* \(Divvy::Master::Shutdown\)/)
      end
    end

    it 'still reaches rescue Divvy::Master::Shutdown, with the signal number' do
      Dir.mktmpdir do |dir|
        pid = spawn_ruby(<<~RUBY, dir)
          require 'divvy'
          begin
            Divvy.each((1..), workers: 2) { |i| File.write(File.join(ENV.fetch('OUT'), 'busy'), '') if i == 20; sleep 0.01 }
          rescue Divvy::Master::Shutdown => e
            puts [e.class, e.signo, e.is_a?(SignalException), e.is_a?(StandardError)].inspect
          end
        RUBY
        eventually { File.exist?(File.join(dir, 'busy')) }
        Process.kill(:INT, -pid)
        expect(wait_for(pid)).to be_success
        expect(File.read(File.join(dir, 'stdout'))).to eq("[Divvy::Master::Shutdown, #{Signal.list['INT']}, true, false]\n")
      end
    end
  end
end

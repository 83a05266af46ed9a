# frozen_string_literal: true

require 'etc'
require 'fileutils'
require 'divvy'

# Divvy.processors: the default worker count, read from a fake file system
# root holding /proc/self/cgroup and /sys/fs/cgroup as a container shows
# them.
RSpec.describe 'Divvy.processors' do
  around do |example|
    Dir.mktmpdir('divvy-cgroup') do |root|
      @root = root
      example.run
    end
  end

  # Writes `content` at `path` under the fake root.
  def fake(path, content)
    file = File.join(@root, path)
    FileUtils.mkdir_p(File.dirname(file))
    File.write(file, content)
  end

  # What Divvy.processors must return for a quota of `cpus` on this
  # machine: rounded up, never more than the affinity mask allows.
  def bounded(cpus)
    [cpus, Etc.nprocessors].min
  end

  it 'is the affinity-aware processor count when there are no cgroups (macOS)' do
    expect(Divvy.processors(root: @root)).to eq(Etc.nprocessors)
  end

  it 'is the affinity-aware processor count under a cgroup v2 cpu.max of "max"' do
    fake('proc/self/cgroup', "0::/\n")
    fake('sys/fs/cgroup/cpu.max', "max 100000\n")
    expect(Divvy.processors(root: @root)).to eq(Etc.nprocessors)
  end

  it 'rounds a cgroup v2 quota up: 150000 / 100000 is 2 CPUs, 50000 / 100000 is 1' do
    fake('proc/self/cgroup', "0::/\n")
    fake('sys/fs/cgroup/cpu.max', "150000 100000\n")
    expect(Divvy.processors(root: @root)).to eq(bounded(2))
    fake('sys/fs/cgroup/cpu.max', "50000 100000\n")
    expect(Divvy.processors(root: @root)).to eq(1)
  end

  it "takes the smallest quota of the process's cgroup v2 and its ancestors" do
    fake('proc/self/cgroup', "0::/pods/web\n")
    fake('sys/fs/cgroup/cpu.max', "max 100000\n")
    fake('sys/fs/cgroup/pods/cpu.max', "100000 100000\n")
    fake('sys/fs/cgroup/pods/web/cpu.max', "6400000 100000\n")
    expect(Divvy.processors(root: @root)).to eq(1)
  end

  it "reads the mount's top when the cgroup's own path is not there (a container's namespace)" do
    fake('proc/self/cgroup', "0::/kubepods/pod42/abc\n")
    fake('sys/fs/cgroup/cpu.max', "100000 100000\n")
    expect(Divvy.processors(root: @root)).to eq(1)
  end

  it 'rounds a cgroup v1 cfs quota up, and ignores -1 (no limit)' do
    fake('proc/self/cgroup', "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    fake('sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us', "120000\n")
    fake('sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us', "100000\n")
    fake('sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us', "-1\n")
    fake('sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us', "100000\n")
    expect(Divvy.processors(root: @root)).to eq(bounded(2))
    fake('sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us', "-1\n")
    expect(Divvy.processors(root: @root)).to eq(Etc.nprocessors)
  end

  it 'never says more than the affinity mask allows, nor less than 1' do
    fake('proc/self/cgroup', "0::/\n")
    fake('sys/fs/cgroup/cpu.max', "6400000 100000\n")
    expect(Divvy.processors(root: @root)).to eq(Etc.nprocessors)
    fake('sys/fs/cgroup/cpu.max', "1000 100000\n")
    expect(Divvy.processors(root: @root)).to eq(1)
  end

  it 'ignores cgroup files it cannot parse' do
    fake('proc/self/cgroup', "0::/\n")
    fake('sys/fs/cgroup/cpu.max', "garbage\n")
    expect(Divvy.processors(root: @root)).to eq(Etc.nprocessors)
  end

  it 'counts only the CPUs of the affinity mask, as taskset sets it', if: system('which taskset', out: File::NULL) do
    result = run_command(['taskset', '-c', '0', 'ruby', '-e', 'require "divvy"; p Divvy.processors'])
    expect(result.stdout).to eq("1\n")
  end

  it 'is the default worker count of the divvy command and of Divvy.map' do
    dir = Dir.mktmpdir('divvy-default-workers')
    script = write_script(dir, 'count.rb', <<~RUBY)
      class Count
        include Divvy::Parallelizable
        def dispatch = yield(1)
        def perform(_) = nil
      end
      at_exit { warn "processors=\#{Divvy.processors}" }
    RUBY
    result = divvy('-v', script)
    started = result.stderr.scan(/worker \d+ \(pid \d+\) started/).size
    expect(result.stderr).to include("processors=#{Divvy.processors}")
    expect(started).to eq(Divvy.processors)

    mapped = ruby_code('require "divvy"; p Divvy.map(1..20) { Process.pid }.uniq.size <= Divvy.processors')
    expect(mapped.stdout).to eq("true\n")
  ensure
    FileUtils.rm_rf(dir)
  end
end

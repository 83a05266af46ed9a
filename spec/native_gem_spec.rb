# frozen_string_literal: true

require 'fileutils'
require 'rubygems/package'
require 'divvy/version'

# The precompiled gem (`rake native`): pkg/divvy-VERSION-x86_64-linux.gem
# carries lib/divvy/X.Y/divvy.so for Ruby 3.1 and 3.3 and nothing to
# compile, so it installs and runs where there is no cargo and no libclang.
# CI builds it before the suites; without it (or when it is older than the
# builds in lib/divvy/), this spec packs the same gem from the builds there.
RSpec.describe 'the precompiled gem' do
  let(:ruby_abi) { RUBY_VERSION[/\A\d+\.\d+/] }

  before(:all) do
    @tmp = Dir.mktmpdir('divvy-native-gem-spec')
    @gem_home = File.join(@tmp, 'gem_home')
    @bin = File.join(@tmp, 'bin')
    FileUtils.mkdir_p([@gem_home, @bin])
    # A PATH with Ruby and RubyGems only: no cargo, no llvm-config, no cc.
    %w[ruby gem].each { |tool| File.symlink(File.join(RbConfig::CONFIG['bindir'], tool), File.join(@bin, tool)) }
    @gem_file = native_gem
  end

  after(:all) do
    FileUtils.rm_rf(@tmp)
  end

  # pkg/'s gem when it is newer than every build in lib/divvy/X.Y/; a gem
  # packed from those builds otherwise.
  def native_gem
    packaged = File.join(ROOT, 'pkg', "divvy-#{Divvy::VERSION}-x86_64-linux.gem")
    builds = Dir[File.join(ROOT, 'lib', 'divvy', '*', 'divvy.so')]
    return packaged if File.exist?(packaged) && builds.all? { |build| File.mtime(build) <= File.mtime(packaged) }

    rubies = builds.map { |build| File.basename(File.dirname(build)) }.join(',')
    gem_file = File.join(@tmp, 'divvy-native.gem')
    built = run_long_command(['gem', 'build', 'divvy.gemspec', '-o', gem_file],
                             timeout: 120, env: { 'DIVVY_NATIVE_RUBIES' => rubies })
    raise "gem build failed: #{built.stderr}" unless built.status.success?

    gem_file
  end

  # Runs `command` with the temporary GEM_HOME and the bare PATH, and with
  # LIBCLANG_PATH pointing nowhere, from the temporary directory.
  def bare(*command, timeout: 120)
    env = { 'PATH' => @bin, 'LIBCLANG_PATH' => File.join(@tmp, 'no-libclang'), 'CARGO' => File.join(@tmp, 'no-cargo'),
            'RUBYLIB' => nil, 'RUBYOPT' => nil, 'BUNDLE_GEMFILE' => nil,
            'GEM_HOME' => @gem_home, 'GEM_PATH' => @gem_home }
    run_long_command(command, timeout: timeout, env: env, chdir: @tmp)
  end

  it "is an x86_64-linux gem carrying this Ruby's library and nothing to compile" do
    spec = Gem::Package.new(@gem_file).spec
    expect(spec.platform.to_s).to eq('x86_64-linux')
    expect(spec.extensions).to be_empty
    expect(spec.files).to include("lib/divvy/#{ruby_abi}/divvy.so", 'lib/divvy.rb', 'exe/divvy')
    expect(spec.files.grep(%r{\A(ext|target)/|Cargo})).to be_empty
    expect(spec.required_ruby_version).to be_satisfied_by(Gem::Version.new(RUBY_VERSION))
    expect(spec.required_ruby_version).not_to be_satisfied_by(Gem::Version.new('3.0.7'))
    built = spec.files.filter_map { |file| file[%r{\Alib/divvy/(\d+\.\d+)/divvy\.so\z}, 1] }
    newest = built.max_by { |version| Gem::Version.new(version) }
    expect(spec.required_ruby_version).not_to be_satisfied_by(Gem::Version.new(newest).bump.bump)
  end

  it 'asks for no glibc newer than 2.34 (the README says so; built on Debian 12, which has 2.36)' do
    builds = Gem::Package.new(@gem_file).spec.files.grep(%r{\Alib/divvy/[\d.]+/divvy\.so\z})
    builds.each do |build|
      symbols = run_command(['objdump', '-T', File.join(ROOT, build)])
      expect(symbols.status).to be_success, symbols.stderr
      glibc = symbols.stdout.scan(/GLIBC_([\d.]+)/).flatten.map { |version| Gem::Version.new(version) }.max
      expect(glibc).to be <= Gem::Version.new('2.34'), "#{build} needs glibc #{glibc}"
    end
  end

  it 'installs with no cargo and no libclang, and runs the example through the installed divvy' do
    install = bare('gem', 'install', '--local', '--no-document', '--install-dir', @gem_home, @gem_file)
    expect(install.status).to be_success, "#{install.stdout}\n#{install.stderr}"
    expect(install.stdout + install.stderr).not_to include('Building native extensions')
    expect(Dir.glob('extensions/**/*divvy*', base: @gem_home)).to be_empty

    example = File.join(ROOT, 'examples', 'danceparty.rb')
    run = bare(File.join(@gem_home, 'bin', 'divvy'), '-n', '2', example, '4')
    expect(run.status).to be_success, run.stderr
    lines = run.stdout.lines(chomp: true)
    expect(lines.first).to eq('Generating 4 ticket codes for the show...')
    expect(lines.drop(1).map { |line| line.split[1].to_i }.sort).to eq([0, 1, 2, 3])

    loaded = bare('ruby', '-e', 'require "divvy"; puts $LOADED_FEATURES.grep(/divvy\.so/)')
    expect(loaded.stdout.lines(chomp: true)).to eq(
      [File.join(@gem_home, 'gems', "divvy-#{Divvy::VERSION}-x86_64-linux", 'lib', 'divvy', ruby_abi, 'divvy.so')]
    )
  end
end
